package config

import "testing"

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"16MB", 16 << 20, true},
		{"512kB", 512 << 10, true},
		{"512KB", 512 << 10, true},
		{"1GB", 1 << 30, true},
		{"2TB", 2 << 40, true},
		{"100B", 100, true},
		{"0", 0, true},
		{"4096", 4096, true},
		{" 16 MB ", 16 << 20, true},
		{"16 megs", 0, false},
		{"16mb", 0, false},
		{"16kb", 0, false},
		{"", 0, false},
		{"MB", 0, false},
		{"-1MB", 0, false},
		{"1.5GB", 0, false},
		{"99999999999999TB", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, tc := range cases {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
