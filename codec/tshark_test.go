package codec

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tsharkStartTimeout bounds how long we wait for tshark to report that it
// is capturing; tsharkStopTimeout how long it may take to flush and exit.
const (
	tsharkStartTimeout = 30 * time.Second
	tsharkStopTimeout  = 15 * time.Second
	tsharkSettle       = 2 * time.Second
)

// TestWireshark checks our iso87ascii bytes against an independent decoder:
// Wireshark's ISO 8583 dissector. Messages go over a real loopback TCP
// connection with 2-byte big-endian length headers, tshark captures them,
// and the decoded MTI, bitmaps and every field must equal what we sent.
func TestWireshark(t *testing.T) {
	required := os.Getenv("SWITCHD_REQUIRE_TSHARK") == "1"
	skip := func(format string, args ...any) {
		t.Helper()
		if required {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		skip("tshark not on PATH (set SWITCHD_REQUIRE_TSHARK=1 to make this fatal)")
	}
	if testing.Short() && !required {
		t.Skip("starts a packet capture")
	}

	c := mustLoad(t, "iso87ascii")
	framer := Framer{Header: HeaderBinary2, FrameBytesMax: 8192}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	pcap := filepath.Join(t.TempDir(), "capture.pcap")

	stopCapture, err := startCapture(t, tshark, port, pcap)
	if err != nil {
		skip("cannot capture on lo: %v", err)
	}
	defer stopCapture()

	// Requests and the answers the "host" sends back; each is a separate
	// TCP write, as on a real lane.
	pinBlock := "\x01\x23\x45\x67\x89\xab\xcd\xef"
	exchanges := []struct{ req, resp corpusMessage }{
		{
			corpusMessage{"0200", "0200", map[int]string{
				2: testPAN, 3: "000000", 4: "000000012345", 7: "0612143015", 11: "123456",
				12: "143015", 13: "0612", 14: "2712", 22: "051", 25: "00", 32: "123456",
				35: testPAN + "=27121011000012345678", 37: "416312000001", 41: "TERM0001",
				42: "MERCHANT0000001", 43: "ACME STORE             SPRINGFIELD   US", 49: "840", 52: pinBlock,
			}},
			corpusMessage{"0210", "0210", map[int]string{
				2: testPAN, 3: "000000", 4: "000000012345", 7: "0612143015", 11: "123456",
				32: "123456", 37: "416312000001", 38: "A1B2C3", 39: "00", 41: "TERM0001",
				49: "840", 54: "0001840C0000000123450002840C000000010000",
			}},
		},
		{
			corpusMessage{"0800", "0800", map[int]string{7: "0612143015", 11: "000042", 70: "001"}},
			corpusMessage{"0810", "0810", map[int]string{7: "0612143015", 11: "000042", 39: "00", 70: "001"}},
		},
		{
			corpusMessage{"0400", "0400", map[int]string{
				2: testPAN, 3: "000000", 4: "000000012345", 7: "0612144000", 11: "123470",
				32: "123456", 37: "416312000001", 41: "TERM0001", 49: "840",
				90: "020012345606121430150000012345600000000000",
				95: "000000002345000000000000000000000000000000",
			}},
			corpusMessage{"0410", "0410", map[int]string{
				2: testPAN, 3: "000000", 4: "000000012345", 7: "0612144000", 11: "123470",
				32: "123456", 37: "416312000001", 39: "00", 49: "840",
				90: "020012345606121430150000012345600000000000",
			}},
		},
	}

	// The host side: answer each request with its response.
	var wg sync.WaitGroup
	defer wg.Wait()
	serverErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serverErr <- serve(ln, c, framer, func(i int) *Message { return exchanges[i].resp.message() })
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var sent []corpusMessage
	buf := make([]byte, 0, 1024)
	for _, ex := range exchanges {
		payload, err := c.Pack(nil, ex.req.message())
		if err != nil {
			t.Fatal(err)
		}
		frame, err := framer.AppendFrame(nil, payload)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		answer, err := framer.ReadFrame(conn, buf)
		if err != nil {
			t.Fatal(err)
		}
		var m Message
		if err := c.Unpack(answer, &m); err != nil || m.MTI != ex.resp.mti {
			t.Fatalf("answer: %q, %v", m.MTI, err)
		}
		sent = append(sent, ex.req, ex.resp)
	}
	conn.Close()
	if err := <-serverErr; err != nil {
		t.Fatal(err)
	}
	// Give the capture a moment to see the last segments before stopping.
	time.Sleep(500 * time.Millisecond)
	if err := stopCapture(); err != nil {
		t.Fatalf("stopping tshark: %v", err)
	}

	if p := os.Getenv("SWITCHD_KEEP_PCAP"); p != "" {
		if b, err := os.ReadFile(pcap); err == nil {
			_ = os.WriteFile(p, b, 0o644)
		}
	}
	decoded := decodeCapture(t, tshark, port, pcap)
	if len(decoded) != len(sent) {
		t.Fatalf("tshark decoded %d ISO 8583 messages, we sent %d: %+v", len(decoded), len(sent), decoded)
	}
	for i, want := range sent {
		got := decoded[i]
		if got.mti != want.mti {
			t.Errorf("message %d: tshark MTI %q, sent %q", i, got.mti, want.mti)
		}
		hasSecondary := false
		for id := range want.fields {
			hasSecondary = hasSecondary || id > 64
		}
		if (got.map2 != "") != hasSecondary {
			t.Errorf("%s: tshark secondary bitmap %q, want present=%v", want.mti, got.map2, hasSecondary)
		}
		if hasSecondary && !strings.ContainsAny(got.map1[:1], "89ABCDEF") {
			t.Errorf("%s: tshark bitmap 1 %q lacks bit 1", want.mti, got.map1)
		}
		// Compare with the values as they went on the wire (padded).
		wire, err := c.Pack(nil, want.message())
		if err != nil {
			t.Fatal(err)
		}
		var onWire Message
		if err := c.Unpack(wire, &onWire); err != nil {
			t.Fatal(err)
		}
		for _, id := range onWire.IDs() {
			v := onWire.Get(id)
			if c.fields[id].class == classB {
				v = strings.ToUpper(hex.EncodeToString([]byte(v)))
			}
			if got.fields[id] != v {
				t.Errorf("%s field %d: tshark %q, sent %q", want.mti, id, got.fields[id], v)
			}
		}
		for id := range got.fields {
			if _, ok := want.fields[id]; !ok {
				t.Errorf("%s: tshark decoded field %d we did not send", want.mti, id)
			}
		}
		if got.malformed {
			t.Errorf("%s: tshark flags the message as malformed", want.mti)
		}
	}
}

// serve accepts one connection and answers every frame with resp(i).
func serve(ln net.Listener, c *Codec, f Framer, resp func(int) *Message) error {
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	buf := make([]byte, 0, 1024)
	for i := 0; ; i++ {
		frame, err := f.ReadFrame(conn, buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var m Message
		if err := c.Unpack(frame, &m); err != nil {
			return err
		}
		out, err := c.Pack(nil, resp(i))
		if err != nil {
			return err
		}
		framed, err := f.AppendFrame(nil, out)
		if err != nil {
			return err
		}
		if _, err := conn.Write(framed); err != nil {
			return err
		}
	}
}

// startCapture runs tshark on the loopback interface for one TCP port and
// returns once tshark says it is capturing. stop interrupts it (so it
// flushes the file) and waits for it; it is safe to call more than once.
func startCapture(t *testing.T, tshark string, port int, pcap string) (stop func() error, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, tshark, "-i", "lo", "-f", "tcp port "+strconv.Itoa(port), "-w", pcap)
	// tshark runs dumpcap as a child: give them their own process group so
	// cleanup reaches both, and interrupt rather than kill so the capture
	// file is complete.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = tsharkStopTimeout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}

	// Read stderr until "Capturing on", keeping the text for diagnostics;
	// the reader goroutine ends when tshark closes stderr (at exit).
	capturing := make(chan struct{})
	started := make(chan struct{})
	var mu sync.Mutex // protects log
	var log strings.Builder
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stderr)
		seen, seenStarted := false, false
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if !seen && strings.Contains(sc.Text(), "Capturing on") {
				seen = true
				close(capturing)
			}
			if !seenStarted && strings.Contains(sc.Text(), "Capture started") {
				seenStarted = true
				close(started)
			}
		}
	}()

	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			<-readerDone
			err := cmd.Wait()
			var exit *exec.ExitError
			// An interrupted tshark exits non-zero or by signal; only
			// failing to wait at all is an error.
			if err != nil && !errors.As(err, &exit) && !errors.Is(err, context.Canceled) {
				stopErr = err
			}
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything left in our group
		})
		return stopErr
	}

	select {
	case <-capturing:
		// "Capturing on" comes when tshark has asked dumpcap to capture;
		// packets before dumpcap's "Capture started" are lost. tshark 4
		// logs that line; older versions do not, so fall back to a delay.
		select {
		case <-started:
		case <-time.After(tsharkSettle):
		}
		time.Sleep(tsharkSettle / 4)
		return stop, nil
	case <-readerDone:
		stop()
		mu.Lock()
		defer mu.Unlock()
		return nil, fmt.Errorf("tshark exited before capturing: %s", log.String())
	case <-time.After(tsharkStartTimeout):
		stop()
		mu.Lock()
		defer mu.Unlock()
		return nil, fmt.Errorf("tshark not capturing after %v: %s", tsharkStartTimeout, log.String())
	}
}

// tsharkMessage is one ISO 8583 PDU as Wireshark decoded it.
type tsharkMessage struct {
	mti, map1, map2 string
	fields          map[int]string
	malformed       bool
}

// pdml is the subset of tshark's PDML output we read.
type pdml struct {
	Packets []struct {
		Protos []pdmlProto `xml:"proto"`
	} `xml:"packet"`
}

type pdmlProto struct {
	Name   string      `xml:"name,attr"`
	Fields []pdmlField `xml:"field"`
}

type pdmlField struct {
	Name   string      `xml:"name,attr"`
	Show   string      `xml:"show,attr"`
	Fields []pdmlField `xml:"field"`
}

// decodeCapture reads the capture back with the ISO 8583 dissector on our
// port and returns the messages in capture order.
func decodeCapture(t *testing.T, tshark string, port int, pcap string) []tsharkMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, "-r", pcap,
		"-o", "iso8583.len_endian:Big endian",
		"-d", "tcp.port=="+strconv.Itoa(port)+",iso8583",
		"-T", "pdml")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r: %v: %s", err, stderr.String())
	}
	var doc pdml
	if err := xml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("parsing PDML: %v", err)
	}
	var msgs []tsharkMessage
	for _, p := range doc.Packets {
		for _, proto := range p.Protos {
			switch proto.Name {
			case "iso8583":
				m := tsharkMessage{fields: map[int]string{}}
				walkFields(proto.Fields, func(f pdmlField) {
					switch {
					case f.Name == "iso8583.mti":
						m.mti = f.Show
					case f.Name == "iso8583.map1":
						m.map1 = f.Show
					case f.Name == "iso8583.map2":
						m.map2 = f.Show
					case strings.HasPrefix(f.Name, "iso8583.bit"):
						id, err := strconv.Atoi(strings.TrimPrefix(f.Name, "iso8583.bit"))
						if err == nil && id > 1 {
							m.fields[id] = f.Show
						}
					case strings.HasPrefix(f.Name, "_ws.expert"), strings.HasPrefix(f.Name, "_ws.malformed"):
						m.malformed = true
					}
				})
				msgs = append(msgs, m)
			case "_ws.malformed":
				if len(msgs) > 0 {
					msgs[len(msgs)-1].malformed = true
				}
			}
		}
	}
	return msgs
}

func walkFields(fs []pdmlField, fn func(pdmlField)) {
	for _, f := range fs {
		fn(f)
		walkFields(f.Fields, fn)
	}
}
