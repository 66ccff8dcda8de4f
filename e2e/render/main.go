// render: a small Helm-compatible renderer for the SOC Warden chart, built from Go's text/template,
// Debian's sprig and yaml.v3. It supports what the chart uses: .Values, .Release, .Chart, include,
// tpl, toYaml, required, .Capabilities.APIVersions.Has, and sprig's functions (nindent, default,
// quote, ...). Helm itself cannot be
// installed from this project's registries; keep the chart inside this subset (see README).
//
//	render [-f values.yaml]... [-name release] [-namespace ns] [-api-versions v1,policy/v1,...] [-skip-crds] CHART_DIR
//
// Without -api-versions, .Capabilities holds a current cluster's API versions (as `helm template`
// does); with it, exactly those (as `helm install` reads them from the cluster).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"gopkg.in/yaml.v3"
)

// versionSet is Helm's .Capabilities.APIVersions.
type versionSet []string

// Has reports whether the cluster serves an API version ("policy/v1") or a kind in it ("policy/v1/PodDisruptionBudget").
func (v versionSet) Has(s string) bool {
	for _, x := range v {
		if x == s {
			return true
		}
	}
	return false
}

// defaultVersions: what a current cluster serves, for rendering without one.
var defaultVersions = versionSet{"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1",
	"coordination.k8s.io/v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1"}

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func readYAML(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// merge copies src into dst, recursing into maps (later files win, as with helm -f).
func merge(dst, src map[string]interface{}) {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func toYaml(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func main() {
	var files valueFiles
	flag.Var(&files, "f", "values file (repeatable)")
	name := flag.String("name", "soc-warden", "release name")
	namespace := flag.String("namespace", "soc-warden-system", "release namespace")
	skipCRDs := flag.Bool("skip-crds", false, "do not print the chart's crds/")
	apiVersions := flag.String("api-versions", "", "comma-separated API versions the cluster serves (default: a current cluster's)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: render [-f values.yaml]... [-name n] [-namespace ns] [-api-versions list] [-skip-crds] CHART_DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	versions := defaultVersions
	if *apiVersions != "" {
		versions = strings.Split(*apiVersions, ",")
	}
	if err := run(dir, files, *name, *namespace, versions, *skipCRDs); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(dir string, files []string, name, namespace string, versions versionSet, skipCRDs bool) error {
	chart, err := readYAML(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		over, err := readYAML(f)
		if err != nil {
			return err
		}
		merge(values, over)
	}
	// Helm exposes Chart.yaml keys capitalised.
	chartObj := map[string]interface{}{}
	for k, v := range chart {
		chartObj[strings.ToUpper(k[:1])+k[1:]] = v
	}
	data := map[string]interface{}{
		"Values":       values,
		"Release":      map[string]interface{}{"Name": name, "Namespace": namespace, "Service": "Helm", "IsInstall": true},
		"Chart":        chartObj,
		"Capabilities": map[string]interface{}{"APIVersions": versions},
	}

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYaml
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["include"] = func(tname string, d interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, tname, d)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, d interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, d)
		return buf.String(), err
	}
	root.Funcs(funcs).Option("missingkey=zero")

	paths, err := filepath.Glob(filepath.Join(dir, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	var rendered []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := root.New(filepath.Base(p)).Parse(string(b)); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if !strings.HasPrefix(filepath.Base(p), "_") {
			rendered = append(rendered, filepath.Base(p))
		}
	}

	out := os.Stdout
	if !skipCRDs {
		crds, _ := filepath.Glob(filepath.Join(dir, "crds", "*.yaml"))
		sort.Strings(crds)
		for _, c := range crds {
			b, err := os.ReadFile(c)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "---\n# Source: crds/%s\n%s\n", filepath.Base(c), strings.TrimSpace(string(b)))
		}
	}
	for _, n := range rendered {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			return fmt.Errorf("templates/%s: %w", n, err)
		}
		text := strings.TrimSpace(buf.String())
		// "<no value>" means a template read something the values do not have: a bug, not output.
		if strings.Contains(text, "<no value>") {
			return fmt.Errorf("templates/%s: a value is missing (rendered <no value>)", n)
		}
		for _, doc := range strings.Split(text, "\n---") {
			doc = strings.TrimSpace(strings.TrimPrefix(doc, "---"))
			if doc == "" {
				continue
			}
			fmt.Fprintf(out, "---\n# Source: templates/%s\n%s\n", n, doc)
		}
	}
	return nil
}
