package api

import (
	"context"
	"log/slog"
)

// LogHandler passes every record to next and also adds it to the Hub as a
// "log" event: the watcher's decisions (primary lost, failover, heal,
// held by policy) reach /events and the dashboard as they are logged.
// Secrets cannot reach it: the log carries none (config.Secret logs as
// "(sensitive)").
func (h *Hub) LogHandler(next slog.Handler) slog.Handler {
	return &teeHandler{hub: h, next: next}
}

type teeHandler struct {
	hub   *Hub
	next  slog.Handler
	attrs []slog.Attr
}

func (t *teeHandler) Enabled(ctx context.Context, l slog.Level) bool { return t.next.Enabled(ctx, l) }

func (t *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		attrs := map[string]any{}
		for _, a := range t.attrs {
			attrs[a.Key] = a.Value.Resolve().Any()
		}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.Resolve().Any()
			return true
		})
		t.hub.Add(Event{Time: r.Time, Type: "log", Level: levelName(r.Level), Message: r.Message, Attrs: attrs})
	}
	return t.next.Handle(ctx, r)
}

func (t *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &teeHandler{hub: t.hub, next: t.next.WithAttrs(as), attrs: append(append([]slog.Attr(nil), t.attrs...), as...)}
}

func (t *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{hub: t.hub, next: t.next.WithGroup(name), attrs: t.attrs}
}

func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	}
	return "info"
}
