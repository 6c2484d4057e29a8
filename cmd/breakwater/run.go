package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/internal/bound"
	"github.com/breakwater-go/breakwater/store"
)

// Exit codes; see doc.go.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitRedis    = 3
	exitUnknown  = 4
	exitPattern  = 5
	exitCorrupt  = 6
	usageSummary = `usage: breakwater [flags] COMMAND [ARGS]

commands:
  status [PATTERN]        a table of the breakers (--json for scripts)
  watch [PATTERN]         a live feed of transitions
  open NAME [--for D]     reject every call, fleet-wide (for D, then half-open)
  close NAME              close, clearing the counts
  reset NAME              start afresh (also repairs corrupt keys)
  disable NAME            let every call through, never trip

flags of every command (before or after it):
  --redis URL    the Redis of the breakers (default $REDIS_URL, else redis://localhost:6379);
                 redis://, rediss://, unix://, redis+sentinel://, redis+cluster://, host:port,host:port
  --prefix P     the key prefix of the breakers' store (default "breakwater")
  --timeout D    bounds each command's Redis calls, not watch's feed (default 10s)
  --color WHEN   auto, always or never

exit codes: 0 ok, 1 error, 2 usage, 3 Redis unreachable, 4 unknown breaker,
5 bad pattern, 6 corrupt keys. go doc github.com/breakwater-go/breakwater/cmd/breakwater
tells more.
`
)

// env is what run takes from its surroundings; tests make their own.
type env struct {
	getenv func(string) string
	// terminal reports whether w is a terminal.
	terminal func(w io.Writer) bool
	// stable prints volatile values (times, durations, generations) as
	// placeholders, for golden files.
	stable bool
	// now tells the local time (watch's timestamps).
	now func() time.Time
}

func osEnv() env {
	return env{getenv: os.Getenv, terminal: isTerminal, now: time.Now}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// codeError carries an exit code with an error.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &codeError{code: code, err: err} }

func usageError(format string, args ...interface{}) error {
	return withCode(exitUsage, fmt.Errorf(format, args...))
}

// errUnknownBreaker is matched by the error for a name the store does not hold.
var errUnknownBreaker = errors.New("unknown breaker")

// exitCode maps an error to its documented exit code.
func exitCode(err error) int {
	var ce *codeError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, store.ErrUnavailable):
		return exitRedis
	case errors.Is(err, errUnknownBreaker):
		return exitUnknown
	case errors.Is(err, store.ErrBadPattern):
		return exitPattern
	case errors.Is(err, store.ErrCorrupt):
		return exitCorrupt
	case errors.Is(err, errURL):
		return exitUsage
	}
	return exitError
}

// global are the flags every command takes.
type global struct {
	redisURL string
	prefix   string
	timeout  time.Duration
	color    string
}

func (g *global) register(fs *flag.FlagSet, e env) {
	def := e.getenv("REDIS_URL")
	if def == "" {
		def = defaultRedis
	}
	fs.StringVar(&g.redisURL, "redis", def, "the Redis `URL` of the breakers")
	fs.StringVar(&g.prefix, "prefix", store.DefaultPrefix, "the key `prefix` of the breakers' store")
	fs.DurationVar(&g.timeout, "timeout", 10*time.Second, "bounds each command's Redis calls")
	fs.StringVar(&g.color, "color", "auto", "colour output: auto, always or never")
}

// colored reports whether to colour output written to w.
func (g *global) colored(e env, w io.Writer) bool {
	switch g.color {
	case "always":
		return true
	case "never":
		return false
	}
	return e.getenv("NO_COLOR") == "" && e.terminal(w)
}

// command is one subcommand.
type command struct {
	name  string
	args  string // usage of the positional arguments
	min   int    // positional arguments
	max   int
	flags func(fs *flag.FlagSet) // the command's own flags
	run   func(ctx context.Context, c *cli, args []string) error
}

// cli is one run of the command.
type cli struct {
	env    env
	g      global
	stdout io.Writer
	stderr io.Writer
	target *target
	client redis.UniversalClient
	store  *store.Store
}

// run runs the command line args (without the program name) and returns
// the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	if e.getenv == nil {
		e.getenv = func(string) string { return "" }
	}
	if e.terminal == nil {
		e.terminal = func(io.Writer) bool { return false }
	}
	if e.now == nil {
		e.now = time.Now
	}
	c := &cli{env: e, stdout: stdout, stderr: stderr}
	err := c.main(ctx, args)
	if c.client != nil {
		_ = c.client.Close()
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	code := exitCode(err)
	fmt.Fprintf(stderr, "breakwater: %v\n", err)
	if code == exitUsage {
		fmt.Fprintln(stderr, "run breakwater -h for help")
	}
	return code
}

func (c *cli) main(ctx context.Context, args []string) error {
	// The command is the first argument that is not a global flag or its value.
	pre := flag.NewFlagSet("breakwater", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	var g global
	g.register(pre, c.env)
	if err := pre.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, usageSummary)
			return err
		}
		return usageError("%v", err)
	}
	if pre.NArg() == 0 {
		fmt.Fprint(c.stderr, usageSummary)
		return withCode(exitUsage, errors.New("no command given"))
	}
	name, rest := pre.Arg(0), pre.Args()[1:]
	var cmd *command
	for i := range commands {
		if commands[i].name == name {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		return usageError("unknown command %q: want status, watch, open, close, reset or disable", name)
	}

	fs := flag.NewFlagSet("breakwater "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.g = g // the values given before the command are the defaults after it
	fs.StringVar(&c.g.redisURL, "redis", g.redisURL, "")
	fs.StringVar(&c.g.prefix, "prefix", g.prefix, "")
	fs.DurationVar(&c.g.timeout, "timeout", g.timeout, "")
	fs.StringVar(&c.g.color, "color", g.color, "")
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(c.stdout, "usage: breakwater %s %s [flags]\n\nflags:\n", cmd.name, cmd.args)
			fs.SetOutput(c.stdout)
			fs.PrintDefaults()
			return err
		}
		return usageError("%s: %v", cmd.name, err)
	}
	switch {
	case len(pos) < cmd.min:
		return usageError("%s: want %s", cmd.name, cmd.args)
	case len(pos) > cmd.max:
		return usageError("%s: unexpected argument %q (want %s)", cmd.name, pos[cmd.max], cmd.args)
	case c.g.timeout <= 0:
		return usageError("--timeout %v: want > 0", c.g.timeout)
	}
	switch c.g.color {
	case "auto", "always", "never":
	default:
		return usageError("--color %q: want auto, always or never", c.g.color)
	}
	if err := c.connect(ctx); err != nil {
		return err
	}
	return cmd.run(ctx, c, pos)
}

// parseInterleaved parses flags that come before, between or after the
// positional arguments; everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return append(pos, tail...), nil
}

// connect makes the client and the store, and checks that Redis answers.
func (c *cli) connect(ctx context.Context) error {
	t, err := parseTarget(c.g.redisURL)
	if err != nil {
		return err
	}
	c.target = t
	c.client = t.client()
	c.store, err = store.New(c.client, store.Options{Prefix: c.g.prefix})
	if err != nil {
		return usageError("--prefix: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	// The ping returns by --timeout or a signal, whatever the URL's
	// read_timeout; the store bounds its own calls alike.
	err = bound.Call(pctx, bound.ContextAware(c.client), func(ctx context.Context) error {
		return c.client.Ping(ctx).Err()
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return withCode(exitRedis, fmt.Errorf("cannot reach Redis at %s: %v", t.desc, err))
	}
	return nil
}

var commands []command

func init() {
	commands = []command{
		statusCommand(),
		watchCommand(),
		forceCommand("open", "reject every call, fleet-wide"),
		forceCommand("close", "close, clearing the counts"),
		forceCommand("reset", "start afresh (also repairs corrupt keys)"),
		forceCommand("disable", "let every call through, never trip"),
	}
}

// stableOr returns placeholder in stable mode, else s.
func (c *cli) stableOr(placeholder, s string) string {
	if c.env.stable {
		return placeholder
	}
	return s
}

// cleanID keeps an instance id free of white space.
func cleanID(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return '-'
		}
		return r
	}, s)
}
