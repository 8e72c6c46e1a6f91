// Command loadgen is the benchmarks' HTTP client: keep-alive JSON POSTs to /send and SSE streams
// from /stream/{id}, on raw TCP connections. A Python client on a 2-core machine spends about as
// much CPU per message as the server it measures; this one spends a few microseconds, so what the
// benchmarks report as server CPU and latency is the server's.
//
// One run: -conversations N conversations at once, each holding one SSE stream and one keep-alive
// connection for its sends, sending -messages messages one after another; each message is timed
// from its POST to the first "event: token" and to its "event: output". With -messages 0 it only
// POSTs (-posts of them, one at a time) and times each 202. Figures go to stdout as one JSON object.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type result struct {
	Messages     int       `json:"messages"`
	ElapsedS     float64   `json:"elapsed_s"`
	LatencyMs    []float64 `json:"latency_ms"`     // POST -> output (or -> 202 when only posting)
	FirstTokenMs []float64 `json:"first_token_ms"` // POST -> first token (empty when only posting)
	Errors       []string  `json:"errors"`
}

type conn struct {
	c    net.Conn
	r    *bufio.Reader
	host string
}

func dial(addr string) (*conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 64<<10), host: addr}, nil
}

// head reads a response's status line and headers.
func (k *conn) head() (int, map[string]string, error) {
	line, err := k.r.ReadString('\n')
	if err != nil {
		return 0, nil, err
	}
	parts := strings.SplitN(line, " ", 3)
	if len(parts) < 2 {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, nil, err
	}
	headers := map[string]string{}
	for {
		line, err := k.r.ReadString('\n')
		if err != nil {
			return 0, nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return status, headers, nil
		}
		name, value, _ := strings.Cut(line, ":")
		headers[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
	}
}

func (k *conn) post(path string, body []byte) (int, []byte, error) {
	request := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		path, k.host, len(body))
	if _, err := k.c.Write(append([]byte(request), body...)); err != nil {
		return 0, nil, err
	}
	status, headers, err := k.head()
	if err != nil {
		return 0, nil, err
	}
	size, _ := strconv.Atoi(headers["content-length"])
	reply := make([]byte, size)
	_, err = io.ReadFull(k.r, reply)
	return status, reply, err
}

// sse is one open event stream; next returns its lines one at a time (chunked encoding undone).
type sse struct {
	k       *conn
	pending []byte
	lines   [][]byte
}

func openStream(addr, path string) (*sse, error) {
	k, err := dial(addr)
	if err != nil {
		return nil, err
	}
	request := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, addr)
	if _, err := k.c.Write([]byte(request)); err != nil {
		return nil, err
	}
	status, headers, err := k.head()
	if err != nil {
		return nil, err
	}
	if status != 200 {
		return nil, fmt.Errorf("stream answered HTTP %d", status)
	}
	if headers["transfer-encoding"] != "chunked" {
		return nil, fmt.Errorf("stream is not chunked: %v", headers)
	}
	return &sse{k: k}, nil
}

func (s *sse) next() ([]byte, error) {
	for len(s.lines) == 0 {
		sizeLine, err := s.k.r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.ParseInt(strings.TrimSpace(sizeLine), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("bad chunk size %q", sizeLine)
		}
		if size == 0 {
			return nil, io.EOF
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(s.k.r, chunk); err != nil {
			return nil, err
		}
		data := append(s.pending, chunk[:size]...)
		parts := bytes.Split(data, []byte("\n"))
		s.pending = append([]byte(nil), parts[len(parts)-1]...)
		s.lines = parts[:len(parts)-1]
	}
	line := s.lines[0]
	s.lines = s.lines[1:]
	return line, nil
}

func body(conversation, agent, content string) []byte {
	data, _ := json.Marshal(map[string]string{
		"conversation_id": conversation, "sender": "user:bench", "recipient": "agent:" + agent, "content": content,
	})
	return data
}

var (
	tokenLine  = []byte("event: token")
	outputLine = []byte("event: output")
	errorLine  = []byte("event: error")
)

// converse runs one conversation once `start` closes (its connections are open by then: ready is
// told either way); it appends its timings under mu.
func converse(addr, agent, conversation string, messages int, out *result, mu *sync.Mutex,
	ready *sync.WaitGroup, start <-chan struct{}) (err error) {
	told := false
	defer func() {
		if !told {
			ready.Done()
		}
	}()
	stream, err := openStream(addr, "/stream/"+conversation+"?last_id=$")
	if err != nil {
		return err
	}
	defer stream.k.c.Close()
	if _, err := stream.next(); err != nil { // the stream's opening comment: it follows from here on
		return err
	}
	sender, err := dial(addr)
	if err != nil {
		return err
	}
	defer sender.c.Close()
	told = true
	ready.Done()
	<-start
	for i := 0; i < messages; i++ {
		began := time.Now()
		status, reply, err := sender.post("/send", body(conversation, agent, fmt.Sprintf("ping %d", i)))
		if err != nil {
			return err
		}
		if status != 202 {
			return fmt.Errorf("send answered HTTP %d: %s", status, reply)
		}
		first := -1.0
		for {
			line, err := stream.next()
			if err != nil {
				return err
			}
			if first < 0 && bytes.Equal(line, tokenLine) {
				first = float64(time.Since(began).Microseconds()) / 1000
			}
			if bytes.Equal(line, errorLine) {
				return fmt.Errorf("message %d answered with an error event", i)
			}
			if bytes.Equal(line, outputLine) {
				break
			}
		}
		took := float64(time.Since(began).Microseconds()) / 1000
		mu.Lock()
		out.LatencyMs = append(out.LatencyMs, took)
		if first >= 0 {
			out.FirstTokenMs = append(out.FirstTokenMs, first)
		}
		out.Messages++
		mu.Unlock()
	}
	return nil
}

func postOnly(addr, agent string, posts int, out *result) error {
	sender, err := dial(addr)
	if err != nil {
		return err
	}
	defer sender.c.Close()
	for i := 0; i < posts; i++ {
		began := time.Now()
		status, reply, err := sender.post("/send", body(fmt.Sprintf("post-%d", i%50), agent, "x"))
		if err != nil {
			return err
		}
		if status != 202 {
			return fmt.Errorf("send answered HTTP %d: %s", status, reply)
		}
		out.LatencyMs = append(out.LatencyMs, float64(time.Since(began).Microseconds())/1000)
		out.Messages++
	}
	return nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "gateway host:port")
	agent := flag.String("agent", "Bench", "recipient agent")
	conversations := flag.Int("conversations", 1, "conversations at once")
	messages := flag.Int("messages", 100, "messages per conversation (0: only POST, see -posts)")
	posts := flag.Int("posts", 300, "POSTs when -messages is 0")
	prefix := flag.String("prefix", "bench", "conversation id prefix (make it unique per run)")
	flag.Parse()

	out := result{LatencyMs: []float64{}, FirstTokenMs: []float64{}, Errors: []string{}}
	var began time.Time
	if *messages == 0 {
		began = time.Now()
		if err := postOnly(*addr, *agent, *posts, &out); err != nil {
			out.Errors = append(out.Errors, err.Error())
		}
	} else {
		var mu sync.Mutex
		var wg, ready sync.WaitGroup
		start := make(chan struct{})
		for n := 0; n < *conversations; n++ {
			wg.Add(1)
			ready.Add(1)
			go func(n int) {
				defer wg.Done()
				conversation := fmt.Sprintf("%s-%d", *prefix, n)
				err := converse(*addr, *agent, conversation, *messages, &out, &mu, &ready, start)
				if err != nil {
					mu.Lock()
					out.Errors = append(out.Errors, conversation+": "+err.Error())
					mu.Unlock()
				}
			}(n)
		}
		ready.Wait() // every stream is open: time only the messages
		began = time.Now()
		close(start)
		wg.Wait()
	}
	out.ElapsedS = time.Since(began).Seconds()
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
	if len(out.Errors) > 0 {
		os.Exit(1)
	}
}
