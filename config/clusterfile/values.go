package clusterfile

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/pgha/pgha/config"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// sensitiveText stands for a value from env() or file() in diagnostics.
const sensitiveText = "a sensitive value (from env() or file())"

// eval evaluates an attribute and converts it to want (any type for
// cty.DynamicPseudoType). field is the address of the model field the value
// goes to: eval records there the expression's range and whether the value
// was marked sensitive. Marks are removed here, after evaluation, so that
// `port = env("PORT", "5441")` works; conversion errors never quote values.
func (d *decoder) eval(a *hcl.Attribute, want cty.Type, field any) (cty.Value, bool) {
	v, diags := a.Expr.Value(d.ctx)
	rewriteFuncDiags(diags)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	d.ranges[field] = a.Expr.Range()
	v, marks := v.UnmarkDeep()
	if len(marks) > 0 {
		d.sensitive[field] = true
	}
	switch {
	case v.IsNull():
		d.errorAt(a.Expr.Range(), "Missing value", fmt.Sprintf("%s is null; give it a value, or leave it out to use the default.", a.Name))
		return cty.NilVal, false
	case !v.IsWhollyKnown():
		d.errorAt(a.Expr.Range(), "Unknown value", fmt.Sprintf("%s must be known when the file is read.", a.Name))
		return cty.NilVal, false
	case want == cty.DynamicPseudoType:
		return v, true
	}
	cv, err := convert.Convert(v, want)
	if err != nil {
		d.errorAt(a.Expr.Range(), "Incorrect attribute value type", fmt.Sprintf("%s: %s.", a.Name, err))
		return cty.NilVal, false
	}
	return cv, true
}

// show quotes a decoded value for a diagnostic, unless it came from env()
// or file(): those may be secrets and are never repeated.
func (d *decoder) show(field any, v any) string {
	if d.sensitive[field] {
		return sensitiveText
	}
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

func (d *decoder) str(a *hcl.Attribute, dst *string) bool {
	v, ok := d.eval(a, cty.String, dst)
	if ok {
		*dst = v.AsString()
	}
	return ok
}

// filePath decodes a string attribute naming a file and resolves it
// against the cluster file's directory (see path).
func (d *decoder) filePath(a *hcl.Attribute, dst *string) bool {
	if !d.str(a, dst) {
		return false
	}
	*dst = d.path(*dst)
	return true
}

func (d *decoder) integer(a *hcl.Attribute, dst *int) bool {
	v, ok := d.eval(a, cty.Number, dst)
	if !ok {
		return false
	}
	i, acc := v.AsBigFloat().Int64()
	if acc != big.Exact || i > 1<<31-1 || i < -(1<<31) {
		d.errorAt(a.Expr.Range(), "Invalid number", fmt.Sprintf("%s must be a whole number.", a.Name))
		return false
	}
	*dst = int(i)
	return true
}

func (d *decoder) boolean(a *hcl.Attribute, dst *bool) bool {
	v, ok := d.eval(a, cty.Bool, dst)
	if ok {
		*dst = v.True()
	}
	return ok
}

// secret decodes a password; an empty string gives an unset Secret.
func (d *decoder) secret(a *hcl.Attribute) (config.Secret, bool) {
	var s string
	if !d.str(a, &s) {
		return config.Secret{}, false
	}
	if s == "" {
		return config.Secret{}, true
	}
	return config.NewSecret(s), true
}

var (
	// paramNameRe is a PostgreSQL setting name (custom ones have a dot).
	paramNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)
	// paramValueBad are characters that would break a postgresql.conf line.
	paramValueBad = "\n\r\x00"
)

// params decodes a map of PostgreSQL parameters, turning numbers into
// decimal text and bools into on/off, as postgresql.conf writes them.
// Names and values are checked because they end up in a configuration
// file: a newline in either would write a second, unintended setting.
func (d *decoder) params(a *hcl.Attribute) map[string]string {
	v, ok := d.eval(a, cty.DynamicPseudoType, a)
	if !ok {
		return nil
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		d.errorAt(a.Expr.Range(), "Incorrect attribute value type", a.Name+" is a map: { name = value, ... }.")
		return nil
	}
	items := itemRanges(a.Expr)
	out := map[string]string{}
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		key := k.AsString()
		rng, ok := items[key]
		if !ok {
			rng = a.Expr.Range()
		}
		shown := strconv.Quote(key)
		if d.sensitive[a] {
			shown = "(sensitive)"
		}
		if !paramNameRe.MatchString(key) {
			d.errorAt(rng, "Invalid parameter name",
				fmt.Sprintf("%s is not a PostgreSQL setting name: letters, digits and underscores (and one dot for a custom setting).", shown))
			continue
		}
		var s string
		switch {
		case ev.IsNull():
			d.errorAt(rng, "Invalid parameter", fmt.Sprintf("Parameter %s has no value; remove it to keep PostgreSQL's default.", shown))
			continue
		case ev.Type() == cty.String:
			s = ev.AsString()
		case ev.Type() == cty.Number:
			s = ev.AsBigFloat().Text('f', -1)
		case ev.Type() == cty.Bool:
			s = map[bool]string{true: "on", false: "off"}[ev.True()]
		default:
			d.errorAt(rng, "Invalid parameter", fmt.Sprintf("Parameter %s must be a string, number or bool.", shown))
			continue
		}
		if strings.ContainsAny(s, paramValueBad) {
			d.errorAt(rng, "Invalid parameter", fmt.Sprintf("The value of parameter %s contains a line break or NUL; postgresql.conf cannot hold it.", shown))
			continue
		}
		out[key] = s
	}
	return out
}

// itemRanges maps the literal keys of an object constructor ({ k = v })
// to the range of their item, so that a bad parameter is underlined
// alone. Keys that are not literals are left out.
func itemRanges(expr hcl.Expression) map[string]hcl.Range {
	pairs, diags := hcl.ExprMap(expr)
	if diags.HasErrors() {
		return nil
	}
	out := map[string]hcl.Range{}
	for _, p := range pairs {
		k, diags := p.Key.Value(nil)
		if diags.HasErrors() || k.IsMarked() || !k.IsKnown() || k.IsNull() || k.Type() != cty.String {
			continue
		}
		out[k.AsString()] = hcl.RangeBetween(p.Key.Range(), p.Value.Range())
	}
	return out
}
