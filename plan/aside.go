package plan

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/bytesize"
	"github.com/pgha/pgha/state"
)

// AsideKeep is how long a data directory set aside by a re-clone or a
// restore over a node is kept before a plan proposes removing it. Replacing
// data never deletes it (the old directory is renamed beside the new one);
// the disk is given back by a data.remove action, and only when the node
// is healthy again (a running primary, or a standby that streams) and the
// directory is at least this old: a day to look for rows the operator
// still wants, and no surprise deletion by the next `apply -auto-approve`.
const AsideKeep = 24 * time.Hour

const keepText = "a day" // AsideKeep, as the plan says it

// asideStamp reads the UTC time a set-aside directory's name carries
// (<data_dir>.aside-20261201T004923Z, .before-restore-…).
func asideStamp(path string) (time.Time, bool) {
	i := strings.LastIndexByte(path, '-')
	if i < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T150405Z", path[i+1:])
	return t, err == nil
}

// asides plans the removal of set-aside data directories that are no
// longer needed and says what the others cost. A node with prevent_destroy
// keeps them: pgha never deletes its data, set aside or not.
func (b *builder) asides() {
	now := b.s.ObservedAt
	for _, cn := range b.c.Nodes {
		n := b.node(cn.Name)
		if len(n.Aside) == 0 {
			continue
		}
		var total int64
		for _, d := range n.Aside {
			total += d.Bytes
		}
		if cn.PreventDestroy {
			b.diag(Warning, cn.Name, fmt.Sprintf("%s keeps %d set-aside data director%s (%s)", cn.Name, len(n.Aside), plural(len(n.Aside)), bytesize.Format(total)),
				fmt.Sprintf("%s has prevent_destroy = true: pgha never removes them. Delete %s by hand once nothing in it is needed.", cn.Name, asidePaths(n.Aside)))
			continue
		}
		healthy := b.healthy(cn, n)
		var kept, foreign []state.AsideDir
		for _, d := range n.Aside {
			if !d.Owned {
				foreign = append(foreign, d)
				continue
			}
			at, ok := asideStamp(d.Path)
			if !healthy || !ok || now.IsZero() || now.Sub(at) < AsideKeep {
				kept = append(kept, d)
				continue
			}
			a := newAction(DataRemove, Delete, cn.Name, filepath.Base(d.Path),
				fmt.Sprintf("%s is healthy again; the data set aside in %s on %s is no longer needed: removing it frees %s",
					cn.Name, d.Path, at.Format("2006-01-02 15:04Z"), bytesize.Format(d.Bytes)))
			a.Before = map[string]string{"path": d.Path, "size": bytesize.Format(d.Bytes)}
			a.Params = Params{Path: d.Path, Bytes: d.Bytes}
			a.DataLoss = true
			b.add(a)
		}
		if len(foreign) > 0 {
			var fb int64
			for _, d := range foreign {
				fb += d.Bytes
			}
			b.diag(Warning, cn.Name, fmt.Sprintf("%s keeps %d set-aside data director%s pgha did not make (%s)", cn.Name, len(foreign), plural(len(foreign)), bytesize.Format(fb)),
				fmt.Sprintf("%s: set aside by a re-clone, but without pgha's marker for cluster %s (another cluster's data, or files put there by hand). pgha never removes them; delete them by hand once nothing in them is needed.",
					asidePaths(foreign), b.c.Name))
		}
		if len(kept) == 0 {
			continue
		}
		var kb int64
		for _, d := range kept {
			kb += d.Bytes
		}
		when := fmt.Sprintf("once %s is healthy and it is %s old", cn.Name, keepText)
		if healthy {
			when = fmt.Sprintf("once it is %s old", keepText)
		}
		b.diag(Warning, cn.Name, fmt.Sprintf("%s keeps %d set-aside data director%s (%s)", cn.Name, len(kept), plural(len(kept)), bytesize.Format(kb)),
			fmt.Sprintf("%s: its data from before a re-clone or a restore, kept rather than deleted. A plan proposes removing it %s.", asidePaths(kept), when))
	}
}

// healthy: the node is what cluster.hcl says and this plan leaves it alone
// (the running writable primary, or a standby that streams).
func (b *builder) healthy(cn *config.Node, n *state.Node) bool {
	for _, a := range b.p.Actions {
		if a.Node == cn.Name && a.Kind != CatalogRecord {
			return false
		}
	}
	if cn.Name == b.target {
		return b.actual == b.target && b.primaryUp == "" && b.switched == "" && n.Role() == state.RolePrimary
	}
	return n.Role() == state.RoleStandby && n.Upstream != nil && n.Upstream.Status == "streaming"
}

func asidePaths(dirs []state.AsideDir) string {
	var p []string
	for _, d := range dirs {
		p = append(p, d.Path)
	}
	return strings.Join(p, ", ")
}

func plural(n int) string {
	if n == 1 {
		return "y"
	}
	return "ies"
}
