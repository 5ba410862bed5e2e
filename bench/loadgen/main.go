// loadgen: the HTTP load generator of trackflow's benchmark (`python -m bench`).
//
// Two modes, both POSTing request bodies taken in turn from a file (one JSON body a line):
//
//	-rate R > 0   open loop: a request is sent every 1/R s whatever the answers do, so
//	              queueing shows in the latency; latency counts from the time the request
//	              was due, not from when it could be sent (no coordinated omission).
//	-rate 0       closed loop: -connections C clients each send the next request as soon
//	              as the previous one is answered: the server's maximum throughput.
//
// It prints one JSON object with counts, statuses, errors and latency percentiles.
// Standard library only, so it builds with any Go >= 1.19 without downloading anything.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type sample struct {
	latency time.Duration
	status  int
	err     string
}

type result struct {
	Mode             string         `json:"mode"`
	URL              string         `json:"url"`
	OfferedRate      float64        `json:"offered_rate"`
	Connections      int            `json:"connections"`
	DurationSeconds  float64        `json:"duration_seconds"`
	ElapsedSeconds   float64        `json:"elapsed_seconds"`
	Scheduled        int            `json:"scheduled"`
	Unsent           int            `json:"unsent"`
	Requests         int            `json:"requests"`
	OK               int            `json:"ok"`
	Throughput       float64        `json:"throughput"`
	OKThroughput     float64        `json:"ok_throughput"`
	SendLagMaxMillis float64        `json:"send_lag_max_ms"`
	Statuses         map[string]int `json:"statuses"`
	Errors           map[string]int `json:"errors"`
	LatencyMillis    map[string]any `json:"latency_ms"`
}

func readBodies(path string) ([][]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var bodies [][]byte
	scanner := bufio.NewScanner(fh)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		line := bytes.TrimSpace(scanner.Bytes())
		if len(line) > 0 {
			bodies = append(bodies, append([]byte(nil), line...))
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if len(bodies) == 0 {
		return nil, fmt.Errorf("%s holds no request bodies", path)
	}
	return bodies, nil
}

func newClient(connections int, timeout time.Duration) *http.Client {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        connections,
		MaxIdleConnsPerHost: connections,
		MaxConnsPerHost:     connections,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: transport, Timeout: timeout}
}

func send(client *http.Client, url string, body []byte) (int, string) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, shortError(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, ""
}

func shortError(err error) string {
	text := err.Error()
	if len(text) > 120 {
		text = text[:120]
	}
	return text
}

// openLoop sends at a fixed rate for the duration. At most `connections` requests are in
// flight: a request that waits for a free slot is late, and its wait counts in its latency;
// requests still waiting when the duration is over are not sent at all and are counted as
// unsent (the server could not keep up), so an overloaded run still ends on time.
func openLoop(client *http.Client, url string, bodies [][]byte, rate float64, connections int, duration time.Duration) ([]sample, int, time.Duration, time.Duration) {
	total := int(math.Round(rate * duration.Seconds()))
	samples := make([]sample, 0, total)
	var mu sync.Mutex
	slots := make(chan struct{}, connections)
	var wg sync.WaitGroup
	var maxLag time.Duration
	interval := float64(time.Second) / rate
	start := time.Now()
	deadline := start.Add(duration)
	sent := 0
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
schedule:
	for ; sent < total; sent++ {
		due := start.Add(time.Duration(float64(sent) * interval))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case slots <- struct{}{}:
		case <-timer.C:
			break schedule
		}
		if lag := time.Since(due); lag > maxLag {
			maxLag = lag
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			status, errText := send(client, url, bodies[i%len(bodies)])
			s := sample{time.Since(due), status, errText}
			<-slots
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}(sent, due)
	}
	wg.Wait()
	return samples, total - sent, time.Since(start), maxLag
}

// closedLoop runs `connections` clients back to back until the duration is over.
func closedLoop(client *http.Client, url string, bodies [][]byte, connections int, duration time.Duration) ([]sample, time.Duration) {
	var mu sync.Mutex
	var all []sample
	var next int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(duration)
	for c := 0; c < connections; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []sample
			for time.Now().Before(deadline) {
				i := atomic.AddInt64(&next, 1)
				began := time.Now()
				status, errText := send(client, url, bodies[int(i)%len(bodies)])
				mine = append(mine, sample{time.Since(began), status, errText})
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, time.Since(start)
}

func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	if rank < 0 {
		rank = 0
	}
	return float64(sorted[rank]) / float64(time.Millisecond)
}

func summarize(r *result, samples []sample, elapsed time.Duration) {
	r.ElapsedSeconds = elapsed.Seconds()
	r.Requests = len(samples)
	r.Statuses = map[string]int{}
	r.Errors = map[string]int{}
	latencies := make([]time.Duration, 0, len(samples))
	var sum time.Duration
	for _, s := range samples {
		if s.err != "" {
			r.Errors[s.err]++
		} else {
			r.Statuses[strconv.Itoa(s.status)]++
			if s.status >= 200 && s.status < 300 {
				r.OK++
			}
		}
		latencies = append(latencies, s.latency)
		sum += s.latency
	}
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	r.Throughput = float64(r.Requests) / elapsed.Seconds()
	r.OKThroughput = float64(r.OK) / elapsed.Seconds()
	lat := map[string]any{}
	if len(latencies) > 0 {
		lat["mean"] = float64(sum) / float64(len(latencies)) / float64(time.Millisecond)
		lat["p50"] = percentile(latencies, 0.50)
		lat["p90"] = percentile(latencies, 0.90)
		lat["p99"] = percentile(latencies, 0.99)
		lat["p999"] = percentile(latencies, 0.999)
		lat["max"] = float64(latencies[len(latencies)-1]) / float64(time.Millisecond)
	}
	r.LatencyMillis = lat
}

func main() {
	url := flag.String("url", "", "URL to POST to")
	bodiesPath := flag.String("bodies", "", "file with one JSON request body a line, sent in turn")
	rate := flag.Float64("rate", 0, "requests per second (open loop); 0 = closed loop at maximum")
	connections := flag.Int("connections", 64, "closed loop: clients; open loop: most requests in flight")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout")
	flag.Parse()
	if *url == "" || *bodiesPath == "" || *connections < 1 || *duration <= 0 || *rate < 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -url and -bodies are required; -connections >= 1, -duration > 0, -rate >= 0")
		os.Exit(2)
	}
	bodies, err := readBodies(*bodiesPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	client := newClient(*connections, *timeout)
	r := result{URL: *url, OfferedRate: *rate, Connections: *connections, DurationSeconds: duration.Seconds()}
	if *rate > 0 {
		r.Mode = "open-loop"
		samples, unsent, elapsed, lag := openLoop(client, *url, bodies, *rate, *connections, *duration)
		r.SendLagMaxMillis = float64(lag) / float64(time.Millisecond)
		summarize(&r, samples, elapsed)
		r.Unsent = unsent
		r.Scheduled = len(samples) + unsent
	} else {
		r.Mode = "closed-loop"
		samples, elapsed := closedLoop(client, *url, bodies, *connections, *duration)
		summarize(&r, samples, elapsed)
		r.Scheduled = r.Requests
	}
	out, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(out))
}
