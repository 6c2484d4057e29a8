package store

// Fuzz targets for everything the store parses: script replies, the retry
// budget's reply, pub/sub announcements, options. `go test` runs the seed
// corpora (testdata/fuzz/<FuzzName>/); `make fuzz` explores.

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// replyFields turns a fuzzer's string into a script reply: fields separated
// by "|", each an int64 when it parses as one, else a string; "~" is a nil.
func replyFields(data string) interface{} {
	if data == "!" {
		return "not an array"
	}
	parts := strings.Split(data, "|")
	a := make([]interface{}, len(parts))
	for i, p := range parts {
		if n, err := strconv.ParseInt(p, 10, 64); err == nil {
			a[i] = n
		} else if p == "~" {
			a[i] = nil
		} else {
			a[i] = p
		}
	}
	return a
}

func FuzzParseReply(f *testing.F) {
	f.Add("allow|closed|7|0|closed|created|i1|12|1|0|0|0|1|0|0|0|1|0|0|0||0|0|0")
	f.Fuzz(func(t *testing.T, data string) {
		res := replyFields(data)
		rep, err := parseReply(res)
		if err != nil {
			return
		}
		if n := lenOf(res); n < replyLen {
			t.Fatalf("parseReply accepted %d fields, want at least %d", n, replyLen)
		}
		if rep.Verdict == "" {
			t.Fatalf("parseReply accepted an empty verdict: %+v", rep)
		}
	})
}

func FuzzParseBudgetReply(f *testing.F) {
	f.Add("5|100|3|30|1000")
	f.Fuzz(func(t *testing.T, data string) {
		rep, err := parseBudgetReply(replyFields(data))
		if err != nil {
			return
		}
		if rep.granted < 0 || rep.requests < 0 || rep.retries < 0 || rep.limit < 0 || rep.slide < 0 {
			t.Fatalf("parseBudgetReply accepted a negative count: %+v", rep)
		}
	})
}

func FuzzParseAnnouncement(f *testing.F) {
	f.Add("12 payments")
	f.Fuzz(func(t *testing.T, payload string) {
		gen, name, ok := parseAnnouncement(payload)
		if !ok {
			return
		}
		if gen <= 0 || name == "" || !strings.HasSuffix(payload, " "+name) {
			t.Fatalf("parseAnnouncement(%q) = %d, %q: want gen > 0 and the payload's name", payload, gen, name)
		}
	})
}

func FuzzRawPingReply(f *testing.F) {
	f.Add("+PONG\r\n")
	f.Fuzz(func(t *testing.T, line string) {
		// What rawPing does with the first line of an answer.
		err := pingAnswer(line)
		if err == nil && !strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "-") {
			t.Fatalf("pingAnswer(%q) = nil for a line that is no reply", line)
		}
	})
}

func FuzzBudgetOptions(f *testing.F) {
	f.Add("breakwater", 0.2, 10.0, int64(10*time.Second), 10, 5, int64(time.Second), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, prefix string, ratio, floor float64, window int64, buckets, batch int,
		flush, timeout, cooldown int64) {
		o, err := BudgetOptions{Prefix: prefix, Ratio: ratio, Floor: floor, Window: time.Duration(window),
			Buckets: buckets, Batch: batch, FlushInterval: time.Duration(flush),
			Timeout: time.Duration(timeout), Cooldown: time.Duration(cooldown)}.resolve()
		if err != nil {
			if !strings.HasPrefix(err.Error(), "store: BudgetOptions.") {
				t.Fatalf("error %q does not name the option", err)
			}
			return
		}
		switch {
		case math.IsNaN(o.Ratio) || math.IsInf(o.Ratio, 0) || o.Ratio <= 0,
			math.IsNaN(o.Floor) || math.IsInf(o.Floor, 0) || o.Floor < 0,
			o.Window <= 0, o.Buckets <= 0, o.Batch <= 0, o.FlushInterval <= 0, o.Timeout <= 0, o.Cooldown <= 0,
			o.Window/time.Duration(o.Buckets) < time.Millisecond:
			t.Fatalf("resolve accepted %+v", o)
		}
	})
}

func FuzzStoreOptions(f *testing.F) {
	f.Add("breakwater", int64(250*time.Millisecond), int64(time.Second), int64(24*time.Hour))
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // New does no I/O
	defer client.Close()
	f.Fuzz(func(t *testing.T, prefix string, timeout, cooldown, idle int64) {
		s, err := New(client, Options{Prefix: prefix, Timeout: time.Duration(timeout),
			Cooldown: time.Duration(cooldown), IdleExpiry: time.Duration(idle)})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "store: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		defer s.Close()
		if strings.ContainsAny(s.opts.Prefix, "{} \t\r\n") || s.opts.Timeout <= 0 || s.opts.Cooldown <= 0 || s.opts.IdleExpiry < time.Second {
			t.Fatalf("New accepted %+v", s.opts)
		}
	})
}
