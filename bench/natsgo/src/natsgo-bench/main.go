// natsgo-bench: a load generator for any NATS server, built on the official Go client
// (nats.go), so that a server's figures can be checked by a client natsu did not write.
// It speaks to nats:// and ws:// (WebSocket) URLs alike.
//
//	natsgo-bench pubsub --url ws://127.0.0.1:8080 --msgs 100000 --size 16
//	natsgo-bench fanout --url nats://127.0.0.1:4222 --subs 4 --msgs 100000 --size 1KiB
//	natsgo-bench reqrep --url nats://127.0.0.1:4222 --msgs 20000 --size 16
//
// Every run is bounded twice: by its message count and by --timeout. It prints one JSON
// line of results on stdout (progress and errors go to stderr) and exits 0 when every
// message or request went through, 1 when some did not (lost, timed out, disconnected),
// 2 on a usage error. See ../../README.md for the workloads and every field of the output.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// config is what the command line asks for.
type config struct {
	workload    string
	url         string
	subURL      string
	msgs        int
	size        int
	subs        int
	timeout     time.Duration
	linger      time.Duration
	reqTimeout  time.Duration
	warmup      int
	subject     string
	serverPIDs  []int
	compression bool
	pendingMax  int
	tlsCA       string
}

// result is the JSON line printed at the end. Fields that do not apply to a workload are
// left out.
type result struct {
	Tool      string `json:"tool"`
	Client    string `json:"client"`
	Go        string `json:"go"`
	Workload  string `json:"workload"`
	URL       string `json:"url"`
	SubURL    string `json:"sub_url,omitempty"`
	Transport string `json:"transport"`
	Server    string `json:"server"`
	Msgs      int    `json:"msgs"`
	Size      int    `json:"size"`
	Subs      int    `json:"subs"`
	Subject   string `json:"subject"`
	// Complete is true when every message was delivered (or every request answered)
	// within the time bound, with nothing out of order and no error.
	Complete bool `json:"complete"`
	TimedOut bool `json:"timed_out"`

	// Publishing side (pub, pubsub, fanout, queue).
	Sent           int64   `json:"sent,omitempty"`
	PubElapsedS    float64 `json:"pub_elapsed_s,omitempty"`
	PubMsgsPerSec  float64 `json:"pub_msgs_per_s,omitempty"`
	PubMBPerSec    float64 `json:"pub_mb_per_s,omitempty"`
	Received       *int64  `json:"received,omitempty"`
	ReceivedPerSub []int64 `json:"received_per_sub,omitempty"`
	Lost           *int64  `json:"lost,omitempty"`
	OutOfOrder     *int64  `json:"out_of_order,omitempty"`
	Dropped        *int64  `json:"dropped,omitempty"`
	// Delivered messages (summed over subscribers) per second, first publish to last
	// delivery; MB are 10^6 payload bytes.
	ElapsedS   float64 `json:"elapsed_s"`
	MsgsPerSec float64 `json:"msgs_per_s,omitempty"`
	MBPerSec   float64 `json:"mb_per_s,omitempty"`

	// Request/reply.
	Requests  int     `json:"requests,omitempty"`
	Warmup    int     `json:"warmup,omitempty"`
	Answered  *int64  `json:"answered,omitempty"`
	ReqPerSec float64 `json:"req_per_s,omitempty"`
	LatP50Us  float64 `json:"p50_us,omitempty"`
	LatP90Us  float64 `json:"p90_us,omitempty"`
	LatP99Us  float64 `json:"p99_us,omitempty"`
	LatP999Us float64 `json:"p99_9_us,omitempty"`
	LatMaxUs  float64 `json:"max_us,omitempty"`
	LatMinUs  float64 `json:"min_us,omitempty"`
	LatMeanUs float64 `json:"mean_us,omitempty"`

	// Server CPU (utime + stime of --server-pid, summed) over the measured interval.
	ServerPIDs        []int    `json:"server_pids,omitempty"`
	ServerCPUS        *float64 `json:"server_cpu_s,omitempty"`
	ServerCPUUsPerMsg *float64 `json:"server_cpu_us_per_msg,omitempty"`

	Errors []string `json:"errors"`
}

// errorLog keeps the distinct errors seen (with a count each), from any goroutine.
type errorLog struct {
	mu    sync.Mutex
	order []string
	count map[string]int
}

func (l *errorLog) add(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count == nil {
		l.count = map[string]int{}
	}
	if l.count[msg] == 0 {
		l.order = append(l.order, msg)
		fmt.Fprintf(os.Stderr, "natsgo-bench: %s\n", msg)
	}
	l.count[msg]++
}

func (l *errorLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []string{}
	for _, m := range l.order {
		if n := l.count[m]; n > 1 {
			m = fmt.Sprintf("%s (x%d)", m, n)
		}
		out = append(out, m)
	}
	return out
}

var errs errorLog

func usage() {
	fmt.Fprintf(os.Stderr, `usage: natsgo-bench WORKLOAD [flags]

workloads:
  pub      one publisher, no subscriber
  pubsub   one publisher, one subscriber
  fanout   one publisher, --subs subscribers (each gets every message)
  queue    one publisher, --subs subscribers in one queue group (each message once)
  reqrep   one requester, one responder (echoes the payload), sequential requests

flags:
`)
	flag.PrintDefaults()
}

func parseArgs(args []string) (config, error) {
	var c config
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return c, errors.New("the first argument must be the workload")
	}
	c.workload = args[0]
	fs := flag.NewFlagSet("natsgo-bench", flag.ContinueOnError)
	fs.Usage = usage
	flag.CommandLine = fs
	fs.StringVar(&c.url, "url", "nats://127.0.0.1:4222", "server URL: nats://host:port or ws://host:port (wss:// and tls:// too)")
	fs.StringVar(&c.subURL, "sub-url", "", "URL for the subscribers / the responder (default: --url), e.g. another cluster node")
	fs.IntVar(&c.msgs, "msgs", 100000, "messages to publish (requests, for reqrep)")
	size := fs.String("size", "16", "payload size: bytes, or with a suffix B, K/KB/KiB, M/MB/MiB (1024-based)")
	fs.IntVar(&c.subs, "subs", 0, "subscribers (fanout, queue; default 4; pubsub is 1, pub is 0)")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "bound on the measured phase; the run stops and reports what it has when it passes")
	fs.DurationVar(&c.linger, "linger", 3*time.Second, "after the publisher's final flush, give up on subscribers that received nothing for this long")
	fs.DurationVar(&c.reqTimeout, "req-timeout", 5*time.Second, "reqrep: how long one request may wait for its reply")
	fs.IntVar(&c.warmup, "warmup", -1, "reqrep: requests sent first and not measured (default: min(1000, msgs/10))")
	fs.StringVar(&c.subject, "subject", "", "subject (default: natsgo.bench.<workload>.<random>)")
	pids := fs.String("server-pid", "", "comma-separated PIDs of server processes whose CPU time (utime+stime from /proc) over the measured phase is reported")
	fs.BoolVar(&c.compression, "ws-compression", false, "ask for WebSocket permessage-deflate (ws:// URLs only)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM file of the CA that signed the server's certificate (tls:// and wss:// URLs)")
	fs.IntVar(&c.pendingMax, "pending-bytes", 256<<20, "per-subscription client-side buffer in bytes (nats.go drops messages beyond it and counts them in \"dropped\")")
	if err := fs.Parse(args[1:]); err != nil {
		return c, err
	}
	if fs.NArg() != 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.size, err = parseSize(*size); err != nil {
		return c, err
	}
	switch c.workload {
	case "pub":
		c.subs = setOnly(c.subs, 0, &err, "pub")
	case "pubsub", "reqrep":
		c.subs = setOnly(c.subs, 1, &err, c.workload)
	case "fanout", "queue":
		if c.subs == 0 {
			c.subs = 4
		}
	default:
		return c, fmt.Errorf("unknown workload %q", c.workload)
	}
	if err != nil {
		return c, err
	}
	if c.msgs <= 0 || c.subs < 0 || c.timeout <= 0 {
		return c, errors.New("--msgs and --timeout must be positive")
	}
	if c.warmup < 0 {
		c.warmup = c.msgs / 10
		if c.warmup > 1000 {
			c.warmup = 1000
		}
	}
	if c.subURL == "" {
		c.subURL = c.url
	}
	if c.subject == "" {
		c.subject = fmt.Sprintf("natsgo.bench.%s.%d", c.workload, time.Now().UnixNano()%1000000)
	}
	for _, p := range strings.Split(*pids, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, perr := strconv.Atoi(p)
		if perr != nil || n <= 0 {
			return c, fmt.Errorf("bad --server-pid %q", p)
		}
		c.serverPIDs = append(c.serverPIDs, n)
	}
	return c, nil
}

// setOnly gives the one subscriber count a workload allows; another explicit one is an error.
func setOnly(given, want int, err *error, workload string) int {
	if given != 0 && given != want {
		*err = fmt.Errorf("%s has %d subscriber(s); use fanout or queue for --subs %d", workload, want, given)
	}
	return want
}

func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	lower := strings.ToLower(t)
	for _, suf := range []struct {
		s string
		m int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"k", 1 << 10}, {"m", 1 << 20}, {"b", 1}} {
		if strings.HasSuffix(lower, suf.s) {
			t, mult = t[:len(t)-len(suf.s)], suf.m
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad --size %q", s)
	}
	return n * mult, nil
}

// transport names what the URL speaks: "ws" for ws:// and wss://, else "nats".
func transport(u string) string {
	if p, err := url.Parse(u); err == nil && strings.HasPrefix(strings.ToLower(p.Scheme), "ws") {
		return "ws"
	}
	return "nats"
}

// connect opens one connection that never reconnects: a benchmark that lost its server
// must say so rather than carry on.
func connect(c config, u, name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.NoReconnect(),
		nats.Timeout(5 * time.Second),
		// The server may be busy with the load: the default 2 s may not be enough.
		nats.FlusherTimeout(30 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				errs.add("%s: async error on %q: %v", name, sub.Subject, err)
			} else {
				errs.add("%s: async error: %v", name, err)
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				errs.add("%s: disconnected: %v", name, err)
			}
		}),
	}
	if c.compression {
		opts = append(opts, nats.Compression(true))
	}
	if c.tlsCA != "" {
		opts = append(opts, nats.RootCAs(c.tlsCA))
	}
	nc, err := nats.Connect(u, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to %s: %w", name, u, err)
	}
	return nc, nil
}

// cpuTicks sums utime+stime (fields 14 and 15 of /proc/PID/stat) over the PIDs.
func cpuTicks(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		s := string(b)
		// comm may hold spaces and parentheses: the fields after the last ')' start at 3.
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
		}
		total += ut + st
	}
	return total, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go runs on (Go cannot call
// sysconf without cgo; getconf CLK_TCK says the same).
const clockTicks = 100

// cpuMeter reads the server's CPU at the start and the end of the measured phase.
type cpuMeter struct {
	pids  []int
	start int64
	ok    bool
}

func startCPU(pids []int) *cpuMeter {
	m := &cpuMeter{pids: pids}
	if len(pids) == 0 {
		return m
	}
	t, err := cpuTicks(pids)
	if err != nil {
		errs.add("server CPU: %v", err)
		return m
	}
	m.start, m.ok = t, true
	return m
}

func (m *cpuMeter) finish(r *result, msgs int64) {
	if !m.ok {
		return
	}
	t, err := cpuTicks(m.pids)
	if err != nil {
		errs.add("server CPU: %v", err)
		return
	}
	secs := float64(t-m.start) / clockTicks
	r.ServerPIDs = m.pids
	r.ServerCPUS = &secs
	if msgs > 0 {
		us := secs * 1e6 / float64(msgs)
		r.ServerCPUUsPerMsg = &us
	}
}

// subState is one subscriber's tally. Its callback runs on one goroutine (nats.go delivers
// a subscription's messages in order on its own goroutine); the main goroutine reads the
// atomics.
type subState struct {
	sub        *nats.Subscription
	nc         *nats.Conn
	count      int64 // atomic
	lastNanos  int64 // atomic: when the latest message arrived, ns since the start
	next       uint64
	outOfOrder int64 // atomic
}

func main() {
	c, err := parseArgs(os.Args[1:])
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "natsgo-bench: %v\n\n", err)
			usage()
		}
		os.Exit(2)
	}
	r := result{
		Tool: "natsgo-bench", Client: "nats.go " + nats.Version, Go: runtime.Version(),
		Workload: c.workload, URL: c.url, Transport: transport(c.url), Msgs: c.msgs, Size: c.size,
		Subs: c.subs, Subject: c.subject,
	}
	if c.subURL != c.url {
		r.SubURL = c.subURL
	}
	var ok bool
	if c.workload == "reqrep" {
		ok = runReqRep(c, &r)
	} else {
		ok = runPubSub(c, &r)
	}
	r.Errors = errs.list()
	r.Complete = ok && len(r.Errors) == 0 && !r.TimedOut
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
	if !r.Complete {
		os.Exit(1)
	}
}

func runPubSub(c config, r *result) bool {
	queue := ""
	if c.workload == "queue" {
		queue = "natsgo-bench"
	}
	// Every message carries its sequence number in its first 8 bytes (when it is that
	// long), so that each subscriber can check the order it gets them in.
	ordered := c.size >= 8 && queue == ""
	// Delivery times are kept as ns since base; the measured span starts at the first
	// publish, `start`.
	base := time.Now()
	var totalReceived int64 // atomic: over all subscribers
	var expected int64 = int64(c.msgs) * int64(c.subs)
	if queue != "" {
		expected = int64(c.msgs)
	}
	allIn := make(chan struct{})
	var allInOnce sync.Once
	var subs []*subState
	defer func() {
		for _, s := range subs {
			s.nc.Close()
		}
	}()
	for i := 0; i < c.subs; i++ {
		nc, err := connect(c, c.subURL, fmt.Sprintf("natsgo-bench-sub-%d", i+1))
		if err != nil {
			errs.add("%v", err)
			return false
		}
		s := &subState{nc: nc}
		subs = append(subs, s)
		cb := func(m *nats.Msg) {
			if ordered && len(m.Data) >= 8 {
				seq := binary.BigEndian.Uint64(m.Data)
				if seq != s.next {
					atomic.AddInt64(&s.outOfOrder, 1)
				}
				s.next = seq + 1
			}
			atomic.StoreInt64(&s.lastNanos, int64(time.Since(base)))
			atomic.AddInt64(&s.count, 1)
			if atomic.AddInt64(&totalReceived, 1) == expected {
				allInOnce.Do(func() { close(allIn) })
			}
		}
		if queue != "" {
			s.sub, err = nc.QueueSubscribe(c.subject, queue, cb)
		} else {
			s.sub, err = nc.Subscribe(c.subject, cb)
		}
		if err == nil {
			err = s.sub.SetPendingLimits(-1, c.pendingMax)
		}
		if err == nil {
			// The server has the subscription once this round trip is done.
			err = nc.FlushTimeout(10 * time.Second)
		}
		if err != nil {
			errs.add("subscriber %d: %v", i+1, err)
			return false
		}
	}
	pub, err := connect(c, c.url, "natsgo-bench-pub")
	if err != nil {
		errs.add("%v", err)
		return false
	}
	defer pub.Close()
	r.Server = pub.ConnectedServerVersion()
	if r.Transport == "nats" && transport(c.subURL) == "ws" {
		r.Transport = "nats+ws"
	} else if r.Transport == "ws" && c.subs > 0 && transport(c.subURL) == "nats" {
		r.Transport = "ws+nats"
	}
	// A subscriber on another server (--sub-url) needs its interest to cross the route
	// first: probe until one subscriber gets a probe message (10 s at most).
	if c.subURL != c.url && c.subs > 0 {
		if !probeInterest(pub, subs[0].nc, c.subject) {
			errs.add("the subscribers' interest never reached the publisher's server")
			return false
		}
	}

	payload := make([]byte, c.size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	cpu := startCPU(c.serverPIDs)
	start := time.Now()
	deadline := start.Add(c.timeout)
	var sent int64
	for i := 0; i < c.msgs; i++ {
		if ordered {
			binary.BigEndian.PutUint64(payload, uint64(i))
		}
		if err := pub.Publish(c.subject, payload); err != nil {
			errs.add("publish: %v", err)
			break
		}
		sent++
		if i&1023 == 1023 && time.Now().After(deadline) {
			r.TimedOut = true
			break
		}
	}
	if left := time.Until(deadline); left > 0 {
		if err := pub.FlushTimeout(left); err != nil {
			errs.add("publisher's final flush: %v", err)
		}
	} else {
		r.TimedOut = true
	}
	pubElapsed := time.Since(start)
	r.Sent = sent
	r.PubElapsedS = pubElapsed.Seconds()
	r.PubMsgsPerSec = float64(sent) / pubElapsed.Seconds()
	r.PubMBPerSec = float64(sent) * float64(c.size) / pubElapsed.Seconds() / 1e6

	// Wait until every message is in, the time bound passes, or nothing has arrived for
	// --linger (the rest is lost).
	if c.subs > 0 {
		if sent != int64(c.msgs) {
			if queue != "" {
				expected = sent
			} else {
				expected = sent * int64(c.subs)
			}
			if atomic.LoadInt64(&totalReceived) >= expected {
				allInOnce.Do(func() { close(allIn) })
			}
		}
		tick := time.NewTicker(50 * time.Millisecond)
		lastTotal, lastChange := atomic.LoadInt64(&totalReceived), time.Now()
	wait:
		for {
			select {
			case <-allIn:
				break wait
			case now := <-tick.C:
				if now.After(deadline) {
					r.TimedOut = true
					break wait
				}
				if t := atomic.LoadInt64(&totalReceived); t != lastTotal {
					lastTotal, lastChange = t, now
				} else if now.Sub(lastChange) > c.linger {
					break wait
				}
			}
		}
		tick.Stop()
	}
	end := time.Since(start)
	var received, outOfOrder, dropped, lastNanos int64
	for _, s := range subs {
		n := atomic.LoadInt64(&s.count)
		received += n
		r.ReceivedPerSub = append(r.ReceivedPerSub, n)
		outOfOrder += atomic.LoadInt64(&s.outOfOrder)
		if d, err := s.sub.Dropped(); err == nil {
			dropped += int64(d)
		}
		if l := atomic.LoadInt64(&s.lastNanos); l > lastNanos {
			lastNanos = l
		}
	}
	if c.subs == 0 {
		r.ElapsedS = pubElapsed.Seconds()
		cpu.finish(r, sent)
		r.MsgsPerSec, r.MBPerSec = r.PubMsgsPerSec, r.PubMBPerSec
		return sent == int64(c.msgs)
	}
	// The measured span ends at the last delivery, not at the end of a --linger wait.
	elapsed := time.Duration(lastNanos) - start.Sub(base)
	if lastNanos == 0 || elapsed <= 0 {
		elapsed = end
	}
	cpu.finish(r, sent)
	lost := sent*int64(c.subs) - received
	if queue != "" {
		lost = sent - received
	}
	r.Received, r.Lost, r.Dropped = &received, &lost, &dropped
	if ordered {
		r.OutOfOrder = &outOfOrder
	}
	r.ElapsedS = elapsed.Seconds()
	r.MsgsPerSec = float64(received) / elapsed.Seconds()
	r.MBPerSec = float64(received) * float64(c.size) / elapsed.Seconds() / 1e6
	return sent == int64(c.msgs) && lost == 0 && outOfOrder == 0 && dropped == 0
}

// probeInterest publishes on the probe subject until the subscriber's connection gets one.
func probeInterest(pub, subConn *nats.Conn, subject string) bool {
	probe := subject + ".probe"
	got := make(chan struct{}, 1)
	s, err := subConn.Subscribe(probe, func(*nats.Msg) {
		select {
		case got <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return false
	}
	defer s.Unsubscribe()
	subConn.Flush()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pub.Publish(probe, nil)
		pub.Flush()
		select {
		case <-got:
			return true
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

func runReqRep(c config, r *result) bool {
	resp, err := connect(c, c.subURL, "natsgo-bench-responder")
	if err != nil {
		errs.add("%v", err)
		return false
	}
	defer resp.Close()
	_, err = resp.Subscribe(c.subject, func(m *nats.Msg) {
		if err := m.Respond(m.Data); err != nil {
			errs.add("responder: %v", err)
		}
	})
	if err == nil {
		err = resp.FlushTimeout(10 * time.Second)
	}
	if err != nil {
		errs.add("responder: %v", err)
		return false
	}
	req, err := connect(c, c.url, "natsgo-bench-requester")
	if err != nil {
		errs.add("%v", err)
		return false
	}
	defer req.Close()
	r.Server = req.ConnectedServerVersion()
	if c.subURL != c.url && !probeInterest(req, resp, c.subject) {
		errs.add("the responder's interest never reached the requester's server")
		return false
	}
	payload := make([]byte, c.size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	r.Requests, r.Warmup = c.msgs, c.warmup
	// Warm-up: the first requests set up the reply subscription and fill caches.
	warmDeadline := time.Now().Add(c.timeout)
	for i := 0; i < c.warmup && time.Now().Before(warmDeadline); i++ {
		if _, err := req.Request(c.subject, payload, c.reqTimeout); err != nil {
			errs.add("warm-up request: %v", err)
			return false
		}
	}
	lat := make([]time.Duration, 0, c.msgs)
	failures := 0
	cpu := startCPU(c.serverPIDs)
	start := time.Now()
	deadline := start.Add(c.timeout)
	for i := 0; i < c.msgs; i++ {
		if time.Now().After(deadline) {
			r.TimedOut = true
			break
		}
		t0 := time.Now()
		m, err := req.Request(c.subject, payload, c.reqTimeout)
		d := time.Since(t0)
		if err != nil {
			errs.add("request: %v", err)
			if failures++; failures >= 10 {
				break
			}
			continue
		}
		if len(m.Data) != c.size {
			errs.add("reply of %d bytes to a request of %d", len(m.Data), c.size)
		}
		lat = append(lat, d)
	}
	elapsed := time.Since(start)
	answered := int64(len(lat))
	cpu.finish(r, answered)
	r.Answered = &answered
	r.ElapsedS = elapsed.Seconds()
	r.ReqPerSec = float64(answered) / elapsed.Seconds()
	if answered > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		us := func(d time.Duration) float64 { return math.Round(float64(d)/1e1) / 1e2 }
		pct := func(p float64) float64 {
			// nearest rank
			i := int(math.Ceil(p/100*float64(len(lat)))) - 1
			if i < 0 {
				i = 0
			}
			return us(lat[i])
		}
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		r.LatMinUs, r.LatP50Us, r.LatP90Us = us(lat[0]), pct(50), pct(90)
		r.LatP99Us, r.LatP999Us, r.LatMaxUs = pct(99), pct(99.9), us(lat[len(lat)-1])
		r.LatMeanUs = us(sum / time.Duration(len(lat)))
	}
	return answered == int64(c.msgs)
}
