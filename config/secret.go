package config

import "sync"

// secretRef stands for one secret value. Equal values share one ref, so
// comparing Secrets compares values; n makes each ref distinct for
// reflect.DeepEqual and is all a reflection-based printer can show.
type secretRef struct{ n int }

// secretStore interns secret values. It only grows, by the few distinct
// passwords a process ever loads (a reloaded file adds only changed ones).
var secretStore struct {
	sync.Mutex
	refs map[string]*secretRef
	vals map[*secretRef]string
}

func intern(v string) *secretRef {
	if v == "" {
		return nil
	}
	secretStore.Lock()
	defer secretStore.Unlock()
	if r := secretStore.refs[v]; r != nil {
		return r
	}
	if secretStore.refs == nil {
		secretStore.refs = map[string]*secretRef{}
		secretStore.vals = map[*secretRef]string{}
	}
	r := &secretRef{n: len(secretStore.refs) + 1}
	secretStore.refs[v], secretStore.vals[r] = r, v
	return r
}

func reveal(r *secretRef) string {
	if r == nil {
		return ""
	}
	secretStore.Lock()
	defer secretStore.Unlock()
	return secretStore.vals[r]
}
