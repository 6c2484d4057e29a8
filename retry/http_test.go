package retry_test

import (
	"log"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/retry"
)

// quietLog discards a test server's TLS handshake complaints.
func quietLog() *log.Logger { return log.New(discard{}, "", 0) }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2015, 10, 21, 7, 28, 0, 0, time.UTC)
	tests := []struct {
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"120", 120 * time.Second, true},
		{"0", 0, true},
		{"  7 ", 7 * time.Second, true},
		{"007", 7 * time.Second, true},
		{"99999999999999999999999", time.Duration(math.MaxInt64), true},
		{"9223372037", time.Duration(math.MaxInt64), true},            // just past the largest Duration in seconds
		{"Wed, 21 Oct 2015 07:29:30 GMT", 90 * time.Second, true},     // IMF-fixdate
		{now.Add(time.Hour).Format(http.TimeFormat), time.Hour, true}, // as servers format it
		{"Wednesday, 21-Oct-15 07:28:05 GMT", 5 * time.Second, true},  // obsolete RFC 850
		{"Wed Oct 21 07:28:10 2015", 10 * time.Second, true},          // obsolete asctime
		{"Wed, 21 Oct 2015 07:00:00 GMT", 0, true},                    // in the past
		{"", 0, false},
		{"   ", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"Wed, 32 Oct 2015 07:28:00 GMT", 0, false},
	}
	for _, tt := range tests {
		got, ok := retry.ParseRetryAfter(tt.value, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseRetryAfter(%q) = (%v, %v), want (%v, %v)", tt.value, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRetryableStatus(t *testing.T) {
	tests := []struct {
		code int
		want bool
	}{
		{200, false}, {204, false}, {301, false}, {304, false},
		{400, false}, {401, false}, {403, false}, {404, false}, {409, false}, {422, false},
		{408, true}, {429, true},
		{500, false}, {502, true}, {503, true}, {504, true}, {507, true},
		{501, false}, {505, false}, {511, false},
		{0, false}, {99, false}, {600, false}, {-1, false},
	}
	for _, tt := range tests {
		if got := retry.RetryableStatus(tt.code); got != tt.want {
			t.Errorf("RetryableStatus(%d) = %v, want %v", tt.code, got, tt.want)
		}
		if got := (&retry.StatusError{StatusCode: tt.code}).Retryable(); got != tt.want {
			t.Errorf("StatusError{%d}.Retryable() = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestStatusErrorMessage(t *testing.T) {
	tests := []struct {
		err  *retry.StatusError
		want string
	}{
		{&retry.StatusError{StatusCode: 503}, "retry: HTTP 503 Service Unavailable"},
		{&retry.StatusError{StatusCode: 429, RetryAfter: 2 * time.Second}, "retry: HTTP 429 Too Many Requests (retry after 2s)"},
		{&retry.StatusError{StatusCode: 599}, "retry: HTTP 599"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
