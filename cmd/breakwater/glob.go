package main

// match reports whether name matches the Redis glob pattern as SCAN MATCH
// would: * any run of characters, ? one character, [abc] [a-z] [^abc] a
// set, \ escapes the next character. It works on bytes, as Redis does.
// store.List has checked the pattern already.
func match(pattern, name string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 1 && pattern[1] == '*' {
				pattern = pattern[1:]
			}
			if len(pattern) == 1 {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if match(pattern[1:], name[i:]) {
					return true
				}
			}
			return false
		case '?':
			if name == "" {
				return false
			}
			name = name[1:]
			pattern = pattern[1:]
		case '[':
			if name == "" {
				return false
			}
			end, ok := matchSet(pattern[1:], name[0])
			if !ok {
				return false
			}
			pattern = end
			name = name[1:]
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if name == "" || name[0] != pattern[0] {
				return false
			}
			name = name[1:]
			pattern = pattern[1:]
		}
	}
	return name == ""
}

// matchSet matches c against the set that p starts with (after its '[')
// and returns the pattern after the set's ']'.
func matchSet(p string, c byte) (rest string, ok bool) {
	not := len(p) > 0 && p[0] == '^'
	if not {
		p = p[1:]
	}
	found := false
	for len(p) > 0 && p[0] != ']' {
		switch {
		case p[0] == '\\' && len(p) >= 2:
			if p[1] == c {
				found = true
			}
			p = p[2:]
		case len(p) >= 3 && p[1] == '-' && p[2] != ']':
			lo, hi := p[0], p[2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				found = true
			}
			p = p[3:]
		default:
			if p[0] == c {
				found = true
			}
			p = p[1:]
		}
	}
	if len(p) > 0 {
		p = p[1:] // the ']'
	}
	return p, found != not
}
