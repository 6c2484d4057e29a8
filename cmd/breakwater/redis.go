package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// defaultRedis is the Redis used without --redis or $REDIS_URL.
const defaultRedis = "redis://localhost:6379"

// target is a parsed --redis: the client's options, and a description of
// where it points that holds no password.
type target struct {
	kind     string // "node", "sentinel", "cluster"
	node     *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
	desc     string
}

// client makes the client the target describes.
func (t *target) client() redis.UniversalClient {
	switch t.kind {
	case "sentinel":
		return redis.NewFailoverClient(t.failover)
	case "cluster":
		return redis.NewClusterClient(t.cluster)
	}
	return redis.NewClient(t.node)
}

// errURL is matched by the errors of parseTarget.
var errURL = errors.New("bad Redis URL")

// parseTarget reads the forms documented in doc.go. Its errors never hold
// the URL's password.
func parseTarget(raw string) (*target, error) {
	bad := func(err error) error {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the whole URL, password included
		}
		return fmt.Errorf("%w %s: %v", errURL, redact(raw), err)
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, bad(errors.New("empty"))
	}
	scheme, rest, hasScheme := strings.Cut(raw, "://")
	if !hasScheme {
		// host:port, or Cluster seeds host:port,host:port.
		addrs := strings.Split(raw, ",")
		for _, a := range addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, bad(fmt.Errorf("want a URL, host:port or host:port,host:port,...: %v", err))
			}
		}
		if len(addrs) == 1 {
			return &target{kind: "node", node: &redis.Options{Addr: addrs[0]}, desc: "redis://" + addrs[0]}, nil
		}
		return &target{kind: "cluster", cluster: &redis.ClusterOptions{Addrs: addrs}, desc: "cluster " + raw}, nil
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, bad(err)
		}
		return &target{kind: "node", node: o, desc: redact(raw)}, nil
	case "redis+sentinel", "rediss+sentinel":
		u, err := seedsURL(strings.TrimSuffix(strings.ToLower(scheme), "+sentinel"), rest)
		if err != nil {
			return nil, bad(err)
		}
		o, err := redis.ParseFailoverURL(u)
		if err != nil {
			return nil, bad(err)
		}
		if o.MasterName == "" {
			return nil, bad(errors.New("want ?master_name=NAME"))
		}
		return &target{kind: "sentinel", failover: o, desc: redact(raw)}, nil
	case "redis+cluster", "rediss+cluster", "redis-cluster":
		s := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(scheme), "+cluster"), "-cluster")
		u, err := seedsURL(s, rest)
		if err != nil {
			return nil, bad(err)
		}
		o, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, bad(err)
		}
		return &target{kind: "cluster", cluster: o, desc: redact(raw)}, nil
	}
	return nil, bad(fmt.Errorf("unknown scheme %q: want redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", scheme))
}

// seedsURL turns "[userinfo@]h1:p1,h2:p2/rest?q" into the go-redis form
// "scheme://[userinfo@]h1:p1/rest?q&addr=h2:p2".
func seedsURL(scheme, rest string) (string, error) {
	hostEnd := strings.IndexAny(rest, "/?")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	authority, tail := rest[:hostEnd], rest[hostEnd:]
	userinfo := ""
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, authority = authority[:i+1], authority[i+1:]
	}
	hosts := strings.Split(authority, ",")
	for _, h := range hosts {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return "", fmt.Errorf("want host:port seeds separated by commas: %v", err)
		}
	}
	if len(hosts) > 1 {
		extra := make([]string, 0, len(hosts)-1)
		for _, h := range hosts[1:] {
			extra = append(extra, "addr="+url.QueryEscape(h))
		}
		sep := "?"
		if strings.Contains(tail, "?") {
			sep = "&"
		}
		tail += sep + strings.Join(extra, "&")
	}
	return scheme + "://" + userinfo + hosts[0] + tail, nil
}

// secretParams are URL options that hold passwords.
var secretParams = []string{"password", "sentinel_password"}

// redact returns raw with every password replaced by "xxxxx"; when raw
// cannot be parsed, only its scheme.
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		if strings.ContainsAny(raw, "@?") {
			return "(unparsable; not shown)"
		}
		return raw
	}
	// Parse with one host, so that comma-separated seeds do not trouble url.Parse.
	hostEnd := strings.IndexAny(rest, "/?")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	authority, tail := rest[:hostEnd], rest[hostEnd:]
	userinfo, hosts := "", authority
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, hosts = authority[:i], authority[i+1:]
	}
	if userinfo != "" {
		user, _, hasPass := strings.Cut(userinfo, ":")
		userinfo = user
		if hasPass {
			userinfo += ":xxxxx"
		}
		userinfo += "@"
	}
	if path, query, hasQuery := strings.Cut(tail, "?"); hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil {
			return scheme + "://" + userinfo + hosts + path + "?(unparsable; not shown)"
		}
		for _, p := range secretParams {
			if q.Has(p) {
				q.Set(p, "xxxxx")
			}
		}
		tail = path + "?" + q.Encode()
	}
	return scheme + "://" + userinfo + hosts + tail
}
