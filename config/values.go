package config

import (
	"fmt"
	"math/big"
	"net"
	"regexp"
	"sort"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

var (
	slotRe  = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
)

// value evaluates an attribute and converts it to want. Marks are removed
// here, after evaluation: the decoded model keeps secrets in Secret values,
// and no conversion error quotes the value itself.
func (d *decoder) value(a *hcl.Attribute, want cty.Type) (cty.Value, bool) {
	v, diags := a.Expr.Value(d.ctx)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	v, _ = v.UnmarkDeep()
	if v.IsNull() {
		d.errorAt(a.Expr.Range(), "Missing value", fmt.Sprintf("%s must not be null.", a.Name))
		return cty.NilVal, false
	}
	if !v.IsKnown() {
		d.errorAt(a.Expr.Range(), "Unknown value", fmt.Sprintf("%s must be known when the file is read.", a.Name))
		return cty.NilVal, false
	}
	if want == cty.DynamicPseudoType {
		return v, true
	}
	cv, err := convert.Convert(v, want)
	if err != nil {
		d.errorAt(a.Expr.Range(), "Incorrect attribute value type", fmt.Sprintf("%s: %s.", a.Name, err.Error()))
		return cty.NilVal, false
	}
	return cv, true
}

func (d *decoder) str(a *hcl.Attribute) (string, bool) {
	v, ok := d.value(a, cty.String)
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

func (d *decoder) secret(a *hcl.Attribute, b *hcl.Block) Secret {
	s, ok := d.str(a)
	if !ok {
		d.failed[b.DefRange.String()+"."+a.Name] = true
	}
	if s == "" {
		return Secret{}
	}
	return NewSecret(s)
}

func (d *decoder) integer(a *hcl.Attribute) (int, bool) {
	v, ok := d.value(a, cty.Number)
	if !ok {
		return 0, false
	}
	bf := v.AsBigFloat()
	i, acc := bf.Int64()
	if acc != big.Exact || i > 1<<31 || i < -(1<<31) {
		d.errorAt(a.Expr.Range(), "Invalid number", fmt.Sprintf("%s must be a whole number.", a.Name))
		return 0, false
	}
	return int(i), true
}

func (d *decoder) boolean(a *hcl.Attribute) (bool, bool) {
	v, ok := d.value(a, cty.Bool)
	if !ok {
		return false, false
	}
	return v.True(), true
}

// params decodes a map of PostgreSQL parameters, turning numbers into
// decimal text and bools into on/off, as postgresql.conf writes them.
func (d *decoder) params(a *hcl.Attribute) map[string]string {
	v, ok := d.value(a, cty.DynamicPseudoType)
	if !ok {
		return nil
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		d.errorAt(a.Expr.Range(), "Incorrect attribute value type", "parameters is a map: { name = value, ... }.")
		return nil
	}
	out := map[string]string{}
	keys := []string{}
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		key := k.AsString()
		keys = append(keys, key)
		switch {
		case ev.IsNull():
			d.errorAt(a.Expr.Range(), "Invalid parameter", fmt.Sprintf("parameter %s has no value.", key))
		case ev.Type() == cty.String:
			out[key] = ev.AsString()
		case ev.Type() == cty.Number:
			out[key] = ev.AsBigFloat().Text('f', -1)
		case ev.Type() == cty.Bool:
			out[key] = map[bool]string{true: "on", false: "off"}[ev.True()]
		default:
			d.errorAt(a.Expr.Range(), "Invalid parameter", fmt.Sprintf("parameter %s must be a string, number or bool.", key))
		}
	}
	sort.Strings(keys)
	return out
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || h == "" {
		return "", 0, fmt.Errorf("bad port")
	}
	return h, n, nil
}
