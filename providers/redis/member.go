package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgha/pgha/state"
)

// ErrMemberHeld says that another live agent holds a node's member lease.
var ErrMemberHeld = errors.New("the member lease is held by another agent")

// MemberHeldError names the agent that holds a node's member lease.
type MemberHeldError struct {
	Node   string
	Holder *state.Lock
}

func (e *MemberHeldError) Error() string {
	if e.Holder == nil {
		return fmt.Sprintf("the member lease of %s is held by another agent", e.Node)
	}
	return fmt.Sprintf("the member lease of %s is held by %s: one agent per node", e.Node, e.Holder)
}

// Is makes errors.Is(err, ErrMemberHeld) true.
func (e *MemberHeldError) Is(target error) bool { return target == ErrMemberHeld }

// memberPrefix is the key prefix of the member leases: pgha:{c}:member:NODE.
const memberPrefix = "member:"

// HoldMember takes node's member lease for the agent info describes: the
// key pgha:{cluster}:member:NODE, set with ttl and renewed every ttl/3
// for as long as ctx lives, exactly as the leader lease is (same Lease,
// same Lost: no renewal acknowledged for ttl minus a tenth of it, counted
// from when the last good renewal was sent, so that the agent gives up
// before Redis, which counts from when it ran the command, drops the
// key). A key holding info.ID is the agent's own (it restarted, or takes
// the lease again after losing it) and is taken back; a holder gone
// declares dead (an agent on this host whose process exited) is replaced
// at once; another live agent is a *MemberHeldError.
func (c *Catalog) HoldMember(ctx context.Context, node string, info state.Lock, ttl time.Duration, gone func(*state.Lock) bool) (*Lease, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("member lease of %s: ttl must be positive", node)
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode member: %w", err)
	}
	key := c.key(memberPrefix + node)
	what := "the member lease of " + node
	for range 3 {
		sent := time.Now()
		ok, err := c.client.SetNX(ctx, key, b, ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("take %s in redis %s: %w", what, c.addr(), err)
		}
		if ok {
			return c.lease(ctx, key, what, info.ID, ttl, sent), nil
		}
		holder, err := c.holderAt(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read %s in redis %s: %w", what, c.addr(), err)
		}
		if holder == nil {
			continue
		}
		mine := holder.ID == info.ID
		if !mine && (gone == nil || !gone(holder)) {
			return nil, &MemberHeldError{Node: node, Holder: holder}
		}
		sent = time.Now()
		n, err := takeoverScript.Run(ctx, c.client, []string{key}, holder.ID, b, ttl.Milliseconds()).Int()
		if err != nil {
			return nil, fmt.Errorf("take over %s from %s: %w", what, holder, err)
		}
		if n == 1 {
			l := c.lease(ctx, key, what, info.ID, ttl, sent)
			if !mine {
				l.tookOver = holder
			}
			return l, nil
		}
	}
	h, _ := c.holderAt(ctx, key)
	return nil, &MemberHeldError{Node: node, Holder: h}
}

// Members reads every member lease Redis still holds, by node name. An
// expired lease is gone from Redis, so it is absent here: that is what a
// watcher waits for before it promotes in place of a node its runtime
// cannot reach.
func (c *Catalog) Members(ctx context.Context) (map[string]state.Lock, error) {
	prefix := c.key(memberPrefix)
	out := map[string]state.Lock{}
	var keys []string
	iter := c.client.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("list member leases in redis %s: %w", c.addr(), err)
	}
	if len(keys) == 0 {
		return out, nil
	}
	vals, err := c.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("read member leases in redis %s: %w", c.addr(), err)
	}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired between SCAN and MGET
		}
		var l state.Lock
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			return nil, fmt.Errorf("decode member lease %s: %w", keys[i], err)
		}
		out[strings.TrimPrefix(keys[i], prefix)] = l
	}
	return out, nil
}
