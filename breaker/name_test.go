package breaker_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/breakwater-go/breakwater/breaker"
)

// TestCheckNameQuotesLongNamesShort: the error for a name too long does
// not echo the whole name, only its start and its length.
func TestCheckNameQuotesLongNamesShort(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{strings.Repeat("a", 600), `name = "` + strings.Repeat("a", 64) + `"… (600 bytes): want at most 512 bytes`},
		// A cut never splits a rune: 21 three-byte runes are 63 bytes.
		{strings.Repeat("€", 200), `name = "` + strings.Repeat("€", 21) + `"… (600 bytes): want at most 512 bytes`},
		{"a{b}", `name = "a{b}": want no braces`},
	}
	for _, tt := range tests {
		err := breaker.CheckName(tt.name)
		if !errors.Is(err, breaker.ErrInvalidSettings) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckName(%d bytes): got %q, want it to contain %q", len(tt.name), err, tt.want)
		}
		if len(err.Error()) > 200 || !utf8.ValidString(err.Error()) {
			t.Errorf("CheckName(%d bytes): message of %d bytes (valid UTF-8: %v), want a short valid one",
				len(tt.name), len(err.Error()), utf8.ValidString(err.Error()))
		}
	}
}
