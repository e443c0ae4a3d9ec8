package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// A small kustomize: enough for the features deploy/kubernetes uses (resources, patches as
// strategic merge patches with $patch: delete, patches with a target as JSON 6902 operations).
// A kustomization with any other field fails to decode, so a new feature needs the loader to learn
// it. TestRenderMatchesKustomize compares the result with the real kustomize where kubectl is
// installed.

// object is one rendered manifest.
type object struct {
	APIVersion, Kind, Name, Namespace string
	// JSON is the object after patches.
	JSON []byte
	// Source is the file it came from.
	Source string
}

func (o object) id() string {
	return fmt.Sprintf("%s/%s %s/%s", o.APIVersion, o.Kind, o.Namespace, o.Name)
}

func (o object) group() string {
	if i := strings.Index(o.APIVersion, "/"); i >= 0 {
		return o.APIVersion[:i]
	}
	return ""
}

type kustomization struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Resources  []string      `json:"resources"`
	Patches    []patchSource `json:"patches"`
}

type patchSource struct {
	Path   string       `json:"path"`
	Target *patchTarget `json:"target"`
}

type patchTarget struct {
	Group     string `json:"group"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// header is what identifies a manifest.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Patch string `json:"$patch"`
}

// render builds the kustomization in dir.
func render(dir string) ([]object, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml (a field this loader does not know?): %w", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s/kustomization.yaml: apiVersion %q kind %q", dir, k.APIVersion, k.Kind)
	}
	var objs []object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", dir, r, err)
		}
		var more []object
		if st.IsDir() {
			more, err = render(p)
		} else {
			more, err = readObjects(p)
		}
		if err != nil {
			return nil, err
		}
		for _, o := range more {
			for _, have := range objs {
				if have.id() == o.id() {
					return nil, fmt.Errorf("%s: %s twice (%s, %s)", dir, o.id(), have.Source, o.Source)
				}
			}
			objs = append(objs, o)
		}
	}
	for _, p := range k.Patches {
		if objs, err = applyPatch(objs, filepath.Join(dir, p.Path), p.Target); err != nil {
			return nil, fmt.Errorf("%s: patch %s: %w", dir, p.Path, err)
		}
	}
	return objs, nil
}

// readDocs splits a YAML file into its documents, without the empty ones.
func readDocs(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1) {
		empty := true
		for _, l := range strings.Split(d, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs, nil
}

// readObjects reads the manifests of a file. Each document is checked strictly (duplicate keys,
// and unknown fields for the kinds typedObject knows) as it is written.
func readObjects(path string) ([]object, error) {
	docs, err := readDocs(path)
	if err != nil {
		return nil, err
	}
	var objs []object
	for i, d := range docs {
		j, err := yaml.YAMLToJSONStrict(d)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", path, i, err)
		}
		var h header
		if err := json.Unmarshal(j, &h); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", path, i, err)
		}
		if h.APIVersion == "" || h.Kind == "" || h.Metadata.Name == "" {
			return nil, fmt.Errorf("%s document %d: apiVersion, kind and metadata.name are required", path, i)
		}
		o := object{APIVersion: h.APIVersion, Kind: h.Kind, Name: h.Metadata.Name, Namespace: h.Metadata.Namespace, JSON: j, Source: path}
		if _, err := decodeStrict(o); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", path, i, err)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

func applyPatch(objs []object, path string, target *patchTarget) ([]object, error) {
	if target != nil {
		return applyJSONPatch(objs, path, target)
	}
	docs, err := readDocs(path)
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		pj, err := yaml.YAMLToJSONStrict(d)
		if err != nil {
			return nil, err
		}
		var h header
		if err := json.Unmarshal(pj, &h); err != nil {
			return nil, err
		}
		i := -1
		for k, o := range objs {
			if o.APIVersion == h.APIVersion && o.Kind == h.Kind && o.Name == h.Metadata.Name &&
				(h.Metadata.Namespace == "" || h.Metadata.Namespace == o.Namespace) {
				i = k
			}
		}
		if i < 0 {
			return nil, fmt.Errorf("no %s %s %s to patch", h.APIVersion, h.Kind, h.Metadata.Name)
		}
		if h.Patch == "delete" {
			objs = append(objs[:i:i], objs[i+1:]...)
			continue
		}
		if h.Patch != "" {
			return nil, fmt.Errorf("$patch %q is not supported", h.Patch)
		}
		typed, err := typedObject(objs[i].APIVersion, objs[i].Kind)
		if err != nil {
			return nil, err
		}
		out, err := strategicpatch.StrategicMergePatch(objs[i].JSON, pj, typed)
		if err != nil {
			return nil, fmt.Errorf("strategic merge into %s: %w", objs[i].id(), err)
		}
		objs[i].JSON = out
	}
	return objs, nil
}

// jsonOp is one JSON 6902 operation: add, replace and remove are supported.
type jsonOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

func applyJSONPatch(objs []object, path string, t *patchTarget) ([]object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ops []jsonOp
	if err := yaml.UnmarshalStrict(data, &ops); err != nil {
		return nil, err
	}
	n := 0
	for i, o := range objs {
		if o.Kind != t.Kind || o.Name != t.Name || o.group() != t.Group ||
			(t.Namespace != "" && t.Namespace != o.Namespace) || !strings.HasSuffix(o.APIVersion, t.Version) {
			continue
		}
		var doc any
		if err := json.Unmarshal(o.JSON, &doc); err != nil {
			return nil, err
		}
		for _, op := range ops {
			if doc, err = applyOp(doc, op); err != nil {
				return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
			}
		}
		if objs[i].JSON, err = json.Marshal(doc); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("target %+v matches nothing", *t)
	}
	return objs, nil
}

// applyOp applies one operation to doc (maps and slices of encoding/json) and returns the result.
func applyOp(doc any, op jsonOp) (any, error) {
	if !strings.HasPrefix(op.Path, "/") {
		return nil, fmt.Errorf("path must start with /")
	}
	var parts []string
	for _, p := range strings.Split(op.Path[1:], "/") {
		parts = append(parts, strings.NewReplacer("~1", "/", "~0", "~").Replace(p))
	}
	var val any
	if op.Op != "remove" {
		if err := json.Unmarshal(op.Value, &val); err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
	}
	var set func(cur any, parts []string) (any, error)
	set = func(cur any, parts []string) (any, error) {
		key, last := parts[0], len(parts) == 1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				_, ok := c[key]
				switch {
				case op.Op == "add":
					c[key] = val
				case !ok:
					return nil, fmt.Errorf("no member %q", key)
				case op.Op == "replace":
					c[key] = val
				case op.Op == "remove":
					delete(c, key)
				default:
					return nil, fmt.Errorf("op %q is not supported", op.Op)
				}
				return c, nil
			}
			next, ok := c[key]
			if !ok {
				return nil, fmt.Errorf("no member %q", key)
			}
			v, err := set(next, parts[1:])
			c[key] = v
			return c, err
		case []any:
			i := len(c)
			if key != "-" {
				n, err := strconv.Atoi(key)
				if err != nil || n < 0 || n > len(c) || (n == len(c) && !(last && op.Op == "add")) {
					return nil, fmt.Errorf("index %q out of range", key)
				}
				i = n
			} else if !last || op.Op != "add" {
				return nil, errors.New(`"-" only as the last token of add`)
			}
			if !last {
				v, err := set(c[i], parts[1:])
				c[i] = v
				return c, err
			}
			switch op.Op {
			case "add":
				return append(c[:i:i], append([]any{val}, c[i:]...)...), nil
			case "replace":
				c[i] = val
				return c, nil
			case "remove":
				return append(c[:i:i], c[i+1:]...), nil
			}
			return nil, fmt.Errorf("op %q is not supported", op.Op)
		}
		return nil, fmt.Errorf("%q: not an object or array", key)
	}
	return set(doc, parts)
}

// typedObject returns a pointer to the Go type of a kind, for strict decoding and strategic merge
// patches. prometheus-operator's types are not a dependency: serviceMonitor and prometheusRule
// declare the fields used, so unknown ones still fail.
func typedObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		return &rbacv1.ClusterRole{}, nil
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, nil
	case "rbac.authorization.k8s.io/v1 Role":
		return &rbacv1.Role{}, nil
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		return &rbacv1.RoleBinding{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &serviceMonitor{}, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &prometheusRule{}, nil
	}
	return nil, fmt.Errorf("no Go type for %s %s: add it to typedObject", apiVersion, kind)
}

// decodeStrict decodes o into its Go type; an unknown field is an error.
func decodeStrict(o object) (any, error) {
	v, err := typedObject(o.APIVersion, o.Kind)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(o.JSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("decode %s strictly: %w", o.id(), err)
	}
	return v, nil
}

// serviceMonitor is monitoring.coreos.com/v1 ServiceMonitor, the fields deploy uses.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool   `json:"honorLabels,omitempty"`
			Relabelings   []struct {
				Action       string   `json:"action,omitempty"`
				Regex        string   `json:"regex,omitempty"`
				SourceLabels []string `json:"sourceLabels,omitempty"`
				TargetLabel  string   `json:"targetLabel,omitempty"`
				Replacement  *string  `json:"replacement,omitempty"`
			} `json:"relabelings,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is monitoring.coreos.com/v1 PrometheusRule; its groups are Prometheus rule groups.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

// ruleGroup is a Prometheus rule group, the fields deploy uses.
type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
