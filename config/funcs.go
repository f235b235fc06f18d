package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Sensitive is the cty mark carried by values that come from env() and
// file(): they may be secrets, so nothing renders them by accident.
const Sensitive = "sensitive"

// functions are the functions cluster.hcl may call. dir is the cluster
// file's directory, against which file() resolves relative paths.
func functions(dir string) map[string]function.Function {
	return map[string]function.Function{
		"env": function.New(&function.Spec{
			Description: "The value of an environment variable, or the default when it is not set.",
			Params:      []function.Parameter{{Name: "name", Type: cty.String}},
			VarParam:    &function.Parameter{Name: "default", Type: cty.String},
			Type:        function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				name := args[0].AsString()
				if len(args) > 2 {
					return cty.NilVal, fmt.Errorf("env takes a name and at most one default")
				}
				if v, ok := os.LookupEnv(name); ok {
					return cty.StringVal(v).Mark(Sensitive), nil
				}
				if len(args) == 2 {
					return args[1].Mark(Sensitive), nil
				}
				return cty.NilVal, fmt.Errorf("environment variable %s is not set; export it, or give a default: env(%q, \"...\")", name, name)
			},
		}),
		"file": function.New(&function.Spec{
			Description: "The contents of a file, relative to the cluster file, without one trailing newline.",
			Params:      []function.Parameter{{Name: "path", Type: cty.String}},
			Type:        function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				p := args[0].AsString()
				if !filepath.IsAbs(p) {
					p = filepath.Join(dir, p)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					if os.IsNotExist(err) {
						return cty.NilVal, fmt.Errorf("no file %s; create it (for the demo: make secrets)", p)
					}
					return cty.NilVal, fmt.Errorf("read %s: %w", p, err)
				}
				s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
				return cty.StringVal(s).Mark(Sensitive), nil
			},
		}),
	}
}
