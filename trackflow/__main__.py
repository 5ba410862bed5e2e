from trackflow.cli import main

main()
