module trackflow/bench/loadgen

go 1.19
