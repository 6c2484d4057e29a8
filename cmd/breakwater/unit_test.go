package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		url   string
		kind  string
		addrs []string // seeds, sentinels or the node
		desc  string
		check func(t *testing.T, tg *target)
	}{
		{url: "redis://u:pw@h:6380/2", kind: "node", addrs: []string{"h:6380"}, desc: "redis://u:xxxxx@h:6380/2",
			check: func(t *testing.T, tg *target) {
				if tg.node.Password != "pw" || tg.node.Username != "u" || tg.node.DB != 2 {
					t.Errorf("got %+v", tg.node)
				}
			}},
		{url: "rediss://:pw@h", kind: "node", addrs: []string{"h:6379"}, desc: "rediss://:xxxxx@h",
			check: func(t *testing.T, tg *target) {
				if tg.node.TLSConfig == nil {
					t.Error("rediss: no TLS")
				}
			}},
		{url: "unix://:pw@/run/redis.sock?db=3", kind: "node", addrs: []string{"/run/redis.sock"}, desc: "unix://:xxxxx@/run/redis.sock?db=3"},
		{url: "h:7000", kind: "node", addrs: []string{"h:7000"}, desc: "redis://h:7000"},
		{url: "h1:7000,h2:7001,h3:7002", kind: "cluster", addrs: []string{"h1:7000", "h2:7001", "h3:7002"}, desc: "cluster h1:7000,h2:7001,h3:7002"},
		{url: "redis+cluster://:pw@h1:7000,h2:7001?dial_timeout=2s", kind: "cluster", addrs: []string{"h1:7000", "h2:7001"},
			desc: "redis+cluster://:xxxxx@h1:7000,h2:7001?dial_timeout=2s",
			check: func(t *testing.T, tg *target) {
				if tg.cluster.Password != "pw" || tg.cluster.DialTimeout != 2*time.Second {
					t.Errorf("got %+v", tg.cluster)
				}
			}},
		{url: "rediss+cluster://h1:7000", kind: "cluster", addrs: []string{"h1:7000"}, desc: "rediss+cluster://h1:7000",
			check: func(t *testing.T, tg *target) {
				if tg.cluster.TLSConfig == nil {
					t.Error("rediss+cluster: no TLS")
				}
			}},
		{url: "redis+sentinel://su:spw@s1:26379,s2:26380/1?master_name=mymaster&password=mpw", kind: "sentinel",
			addrs: []string{"s1:26379", "s2:26380"},
			desc:  "redis+sentinel://su:xxxxx@s1:26379,s2:26380/1?master_name=mymaster&password=xxxxx",
			check: func(t *testing.T, tg *target) {
				f := tg.failover
				if f.MasterName != "mymaster" || f.DB != 1 || f.SentinelUsername != "su" || f.SentinelPassword != "spw" || f.Password != "mpw" {
					t.Errorf("got %+v", f)
				}
			}},
	}
	for _, tt := range tests {
		tg, err := parseTarget(tt.url)
		if err != nil {
			t.Errorf("%s: %v", tt.url, err)
			continue
		}
		var addrs []string
		switch tg.kind {
		case "node":
			addrs = []string{tg.node.Addr}
		case "cluster":
			addrs = tg.cluster.Addrs
		case "sentinel":
			addrs = tg.failover.SentinelAddrs
		}
		if tg.kind != tt.kind || !reflect.DeepEqual(addrs, tt.addrs) || tg.desc != tt.desc {
			t.Errorf("%s: got %s %q %q, want %s %q %q", tt.url, tg.kind, addrs, tg.desc, tt.kind, tt.addrs, tt.desc)
		}
		if tt.check != nil {
			tt.check(t, tg)
		}
	}

	for _, bad := range []string{"", "http://h:1", "redis://:pw@h:1:2/x", "h", "h1:1,h2", "redis+sentinel://:pw@s1:26379",
		"redis+cluster://:pw@h1:1,nope", "redis://:pw@h/1?frob=2", "redis://:p w@h"} {
		_, err := parseTarget(bad)
		if !errors.Is(err, errURL) {
			t.Errorf("%q: got %v, want errURL", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: the error shows the password: %v", bad, err)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true}, {"*", "api:x", true}, {"api:*", "api:x", true}, {"api:*", "ap", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"[ab]x", "bx", true}, {"[ab]x", "cx", false},
		{"[^ab]x", "cx", true}, {"[a-c]x", "bx", true}, {"[a-c]x", "dx", false}, {`a\*`, "a*", true},
		{`a\*`, "ab", false}, {"*:*:v", "a:b:v", true}, {"a**b", "axxb", true}, {"a*b", "axxc", false},
	}
	for _, tt := range tests {
		if got := match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("match(%q, %q): got %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestHuman(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{850 * time.Millisecond, "850ms"}, {12345 * time.Millisecond, "12.3s"}, {245 * time.Second, "4m05s"},
		{123 * time.Minute, "2h03m"}, {76 * time.Hour, "3d04h"}, {-2 * time.Second, "-2.0s"},
	}
	for _, tt := range tests {
		if got := human(tt.d); got != tt.want {
			t.Errorf("human(%v): got %q, want %q", tt.d, got, tt.want)
		}
	}
}
