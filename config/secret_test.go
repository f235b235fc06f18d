package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSecretEqual(t *testing.T) {
	a, b := NewSecret("x"), NewSecret("y")
	if !cmp.Equal(a, NewSecret("x")) || cmp.Equal(a, b) {
		t.Fatal("Equal")
	}
	if d := cmp.Diff(Replication{Password: a}, Replication{Password: b}); d == "" || strings.Contains(d, `"x"`) || strings.Contains(d, `"y"`) {
		t.Fatalf("cmp.Diff: %s", d)
	}
}

func TestSecretValueSemantics(t *testing.T) {
	a, b, c := NewSecret("same"), NewSecret("same"), NewSecret("other")
	if a != b || a == c || !reflect.DeepEqual(Postgres{Password: a}, Postgres{Password: b}) || reflect.DeepEqual(a, c) {
		t.Fatal("secrets do not compare by value")
	}
	if a.Reveal() != "same" || c.Reveal() != "other" || !a.IsSet() {
		t.Fatal("Reveal")
	}
	if NewSecret("") != (Secret{}) || (Secret{}).IsSet() || (Secret{}).Reveal() != "" {
		t.Fatal("the empty secret is not the zero Secret")
	}
}
