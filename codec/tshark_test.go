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
	"slices"
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

// TestWireshark checks our bytes against an independent decoder:
// Wireshark's ISO 8583 dissector, for both dialects (iso87binary with the
// dissector's binary preferences: digits in nibbles, binary data not
// encoded). Messages go over a real loopback TCP connection with 2-byte
// big-endian length headers, tshark captures them, and the decoded MTI,
// bitmaps and every field must equal what we sent, as Wireshark shows it;
// no frame may be flagged malformed.
func TestWireshark(t *testing.T) {
	required := os.Getenv("SWITCHD_REQUIRE_TSHARK") == "1"
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		if required {
			t.Fatal("tshark not on PATH")
		}
		t.Skip("tshark not on PATH (set SWITCHD_REQUIRE_TSHARK=1 to make this fatal)")
	}
	if testing.Short() && !required {
		t.Skip("starts a packet capture")
	}
	t.Run("iso87ascii", func(t *testing.T) {
		c := mustLoad(t, "iso87ascii")
		checkWireshark(t, tshark, required, c, nil, asciiExchanges(), func(id int, v string) string {
			if c.fields[id].class == classB {
				return strings.ToUpper(hex.EncodeToString([]byte(v)))
			}
			return v
		})
	})
	t.Run("iso87binary", func(t *testing.T) {
		c := mustLoad(t, "iso87binary")
		exchanges := binaryExchanges(c)
		// Every field is on the wire in some message, except bit 65 (refused)
		// and those Wireshark frames differently from jPOS (see below).
		sent := map[int]bool{}
		for _, ex := range exchanges {
			for id := range ex.req.fields {
				sent[id] = true
			}
			for id := range ex.resp.fields {
				sent[id] = true
			}
		}
		for id := 2; id <= fieldIDMax; id++ {
			if id != 65 && !slices.Contains(wiresharkMisframes, id) && !sent[id] {
				t.Errorf("field %d is in no message of the binary Wireshark check", id)
			}
		}
		prefs := []string{
			"-o", "iso8583.charset:Digits represented in nibbles",
			"-o", "iso8583.binencode:Bin data not encoded",
		}
		checkWireshark(t, tshark, required, c, prefs, exchanges, func(id int, v string) string {
			return wiresharkShowsBinary(c, id, v)
		})
	})
}

// wiresharkMisframes are the iso87binary fields whose size Wireshark's
// dissector computes differently from jPOS's ISO87BPackager, which the
// dialect follows (each field's note says how): it would misread every
// field after them, so the binary check leaves them out.
var wiresharkMisframes = []int{35, 53, 92, 93, 96}

// TestWiresharkNotes: every field Wireshark misframes, or shows otherwise
// than we send it, says so in the dialect file.
func TestWiresharkNotes(t *testing.T) {
	c := mustLoad(t, "iso87binary")
	for _, id := range wiresharkMisframes {
		if n := c.Note(id); !strings.Contains(n, "Wireshark") || !strings.Contains(n, "misreads") {
			t.Errorf("field %d: note %q does not say Wireshark misreads it", id, n)
		}
	}
	for id := 2; id <= fieldIDMax; id++ {
		v := wiresharkValue(c, id)
		if id == 65 || slices.Contains(wiresharkMisframes, id) || c.fields[id].class == classB {
			continue
		}
		if wiresharkShowsBinary(c, id, v) != v && !strings.Contains(c.Note(id), "Wireshark") {
			t.Errorf("field %d: Wireshark shows %q for %q, and the note does not say so", id, wiresharkShowsBinary(c, id, v), v)
		}
	}
}

// wiresharkShowsBinary is field id's value v as Wireshark's dissector shows
// it with the binary preferences, per the dialect notes: binary fields in
// upper-case hex; BCD of odd length read as if the pad nibble led (our and
// jPOS's right-padded fields lose their first digit and show the pad); a
// sign byte read as a nibble (its low one: 3 for C, 4 for D); fields 86–89
// read as n 15, the same 8 bytes without the first digit.
func wiresharkShowsBinary(c *Codec, id int, v string) string {
	d := &c.fields[id]
	switch {
	case d.class == classB:
		return strings.ToUpper(hex.EncodeToString([]byte(v)))
	case id >= 86 && id <= 89:
		return v[1:]
	case d.enc == encLBCD && len(v)%2 == 1:
		return (v + "0")[1:]
	case d.enc == encBCD && d.class == classXN:
		return string('0'+v[0]&0xF) + v[1:]
	}
	return v
}

// wiresharkValue is a valid value for field id that Wireshark's own class
// checks accept too: its an has no space, so an fields get letters and
// digits only; variable fields are never empty (it flags those).
func wiresharkValue(c *Codec, id int) string {
	d := &c.fields[id]
	n := d.max
	if d.lenDigits != 0 {
		n = min(d.max, 9+id%4) // odd and even lengths
	}
	b := make([]byte, n)
	for i := range b {
		k := i + id
		switch d.class {
		case classN:
			b[i] = byte('0' + k%10)
		case classXN:
			b[i] = byte('0' + k%10)
			if i == 0 {
				b[i] = "CD"[id%2]
			}
		case classAN:
			b[i] = "A1B2C3D4E5F6G7H8I9J0"[k%20]
		case classA:
			b[i] = byte('A' + k%26)
		case classNS:
			b[i] = "0123456789 -./#"[k%15]
		case classANS:
			b[i] = "Ab9 -./#*~=?"[k%12]
		case classB:
			b[i] = byte(37*k + 11)
		default:
			b[i] = byte('0' + k%10)
		}
	}
	return string(b)
}

// asciiExchanges are the requests and the answers the "host" sends back in
// the iso87ascii check; each is a separate TCP write, as on a real lane.
func asciiExchanges() []wiresharkExchange {
	pinBlock := "\x01\x23\x45\x67\x89\xab\xcd\xef"
	return []wiresharkExchange{
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
				55: "9F2608010203040506070882020000",
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
}

// binaryExchanges are the iso87binary check's messages: the ascii check's
// (without track 2, which Wireshark misframes) with an odd-length PAN, and
// two messages that between them carry every other field.
func binaryExchanges(c *Codec) []wiresharkExchange {
	out := asciiExchanges()
	delete(out[0].req.fields, 35)
	out[2].req.fields[2] = "378282246310005"
	out[2].resp.fields[2] = "378282246310005"
	low := map[int]string{}
	high := map[int]string{7: "0612143015", 11: "000077", 39: "00"}
	for id := 2; id <= fieldIDMax; id++ {
		if id == 65 || slices.Contains(wiresharkMisframes, id) {
			continue
		}
		if id <= 64 {
			low[id] = wiresharkValue(c, id)
		} else {
			high[id] = wiresharkValue(c, id)
		}
	}
	return append(out, wiresharkExchange{
		corpusMessage{"0200 fields 2-64", "0200", low},
		corpusMessage{"0210 fields 66-128", "0210", high},
	})
}

// wiresharkExchange is one request and the answer the host sends to it.
type wiresharkExchange struct{ req, resp corpusMessage }

// checkWireshark sends the exchanges in dialect c over loopback while
// tshark captures, decodes the capture with the ISO 8583 dissector and
// prefs, and compares every field with shows(id, value as on the wire).
func checkWireshark(t *testing.T, tshark string, required bool, c *Codec, prefs []string,
	exchanges []wiresharkExchange, shows func(id int, v string) string) {
	skip := func(format string, args ...any) {
		t.Helper()
		if required {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
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
			_ = os.WriteFile(c.Dialect()+"-"+filepath.Base(p), b, 0o644)
		}
	}
	decoded := decodeCapture(t, tshark, port, pcap, prefs)
	if len(decoded) != len(sent) {
		t.Fatalf("tshark decoded %d ISO 8583 messages, we sent %d: %+v", len(decoded), len(sent), decoded)
	}
	malformed := 0
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
			t.Errorf("%s: tshark secondary bitmap %q, want present=%v", want.name, got.map2, hasSecondary)
		}
		if hasSecondary && !strings.ContainsAny(strings.ToUpper(got.map1[:1]), "89ABCDEF") {
			t.Errorf("%s: tshark bitmap 1 %q lacks bit 1", want.name, got.map1)
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
			v := shows(id, onWire.Get(id))
			if c.fields[id].enc == encBinary {
				// Raw binary fields: Wireshark 4.0's hex rendering (bin2hex,
				// TYPE_BIN) ends in a stray character past the hex digits, so
				// the bytes it assigns the field must be exactly ours and the
				// rendering must start with their hex.
				if !strings.EqualFold(got.raw[id], v) || !strings.HasPrefix(got.fields[id], v) {
					t.Errorf("%s field %d: tshark %q (bytes %s), want %q", want.name, id, got.fields[id], got.raw[id], v)
				}
				continue
			}
			if got.fields[id] != v {
				t.Errorf("%s field %d: tshark %q, want %q", want.name, id, got.fields[id], v)
			}
		}
		for id := range got.fields {
			if _, ok := want.fields[id]; !ok {
				t.Errorf("%s: tshark decoded field %d we did not send", want.name, id)
			}
		}
		if got.malformed {
			malformed++
			t.Errorf("%s: tshark flags the message as malformed", want.name)
		}
	}
	t.Logf("%s: %d messages, every field compared, %d malformed", c.Dialect(), len(sent), malformed)
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
	raw             map[int]string // PDML "value": hex of the bytes the dissector gives the field
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
	Value  string      `xml:"value,attr"`
	Fields []pdmlField `xml:"field"`
}

// decodeCapture reads the capture back with the ISO 8583 dissector on our
// port and returns the messages in capture order.
func decodeCapture(t *testing.T, tshark string, port int, pcap string, prefs []string) []tsharkMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"-r", pcap,
		"-o", "iso8583.len_endian:Big endian",
		"-d", "tcp.port==" + strconv.Itoa(port) + ",iso8583",
		"-T", "pdml"}
	cmd := exec.CommandContext(ctx, tshark, append(args, prefs...)...)
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
				m := tsharkMessage{fields: map[int]string{}, raw: map[int]string{}}
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
							m.raw[id] = f.Value
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
