package deploy

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// variants are the kustomizations an operator applies.
var variants = []struct {
	name, dir string
	openshift bool
	// monitoring is the namespace of the Prometheus that scrapes collector.
	monitoring string
}{
	{name: "kubernetes", dir: "kubernetes", monitoring: "monitoring"},
	{name: "openshift", dir: "kubernetes/overlays/openshift", openshift: true, monitoring: "openshift-monitoring"},
}

const (
	tokenPath   = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	injectCA    = "service.beta.openshift.io/inject-cabundle"
	keysAnno    = "collector.dev/keys"
	walMount    = "/var/lib/collector"
	uidNonroot  = 65532
	listenPort  = 8080
	listenArg   = "--listen=:8080"
	metricsPort = "metrics"
)

// rendered is a kustomization's objects, decoded.
type rendered struct {
	objs  []object
	typed map[string]any // by object id
}

func mustRender(t *testing.T, dir string) *rendered {
	t.Helper()
	objs, err := render(dir)
	if err != nil {
		t.Fatalf("render %s: %v", dir, err)
	}
	r := &rendered{objs: objs, typed: map[string]any{}}
	for _, o := range objs {
		v, err := decodeStrict(o)
		if err != nil {
			t.Fatalf("render %s: %v", dir, err)
		}
		r.typed[o.id()] = v
	}
	return r
}

// all returns the objects of type T.
func all[T any](r *rendered) []T {
	var out []T
	for _, o := range r.objs {
		if v, ok := r.typed[o.id()].(*T); ok {
			out = append(out, *v)
		}
	}
	return out
}

// one returns the only object of type T.
func one[T any](t *testing.T, r *rendered) T {
	t.Helper()
	got := all[T](r)
	if len(got) != 1 {
		var z T
		t.Fatalf("want one %T, have %d", z, len(got))
	}
	return got[0]
}

func configMap(t *testing.T, r *rendered, name string) corev1.ConfigMap {
	t.Helper()
	for _, c := range all[corev1.ConfigMap](r) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no ConfigMap %s", name)
	return corev1.ConfigMap{}
}

func container(t *testing.T, sts appsv1.StatefulSet) corev1.Container {
	t.Helper()
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name == "collector" || c.Name == rhacmContainer {
			return c
		}
	}
	t.Fatal("no container collector (or " + rhacmContainer + ")")
	return corev1.Container{}
}

// flagValue returns the value of --name=value in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestRenderDecodesStrictly(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r := mustRender(t, v.dir)
			kinds := map[string]int{}
			for _, o := range r.objs {
				kinds[o.Kind]++
				if o.Kind != "Namespace" && o.Kind != "ClusterRole" && o.Kind != "ClusterRoleBinding" && o.Namespace != "collector" {
					t.Errorf("%s: namespace %q, want collector", o.id(), o.Namespace)
				}
			}
			for _, k := range []string{"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service", "StatefulSet", "ClusterRoleBinding", "ServiceMonitor", "PrometheusRule", "NetworkPolicy"} {
				if kinds[k] == 0 {
					t.Errorf("no %s rendered", k)
				}
			}
		})
	}
}

// TestRenderDetectsUnknownFields makes sure the rendering is strict: a manifest with an unknown
// field or a duplicate key, rendered by kustomize like deploy's own, fails.
func TestRenderDetectsUnknownFields(t *testing.T) {
	for _, tc := range []struct{ name, doc string }{
		{"statefulset", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: c, imagePullPolicy: Always, livenesProbe: {}}]\n"},
		{"servicemonitor", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n  endpoints: [{port: m, honorLabel: true}]\n"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [x.yaml]\n"
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "x.yaml"), []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			err := strictRender(dir)
			if err == nil {
				t.Fatal("rendered and decoded without error")
			}
			t.Log(err)
		})
	}
}

// strictRender renders dir and decodes each object strictly, as mustRender does.
func strictRender(dir string) error {
	objs, err := render(dir)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if _, err := decodeStrict(o); err != nil {
			return err
		}
	}
	return nil
}

func TestStatefulSet(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r := mustRender(t, v.dir)
			sts := one[appsv1.StatefulSet](t, r)
			pod := sts.Spec.Template.Spec
			c := container(t, sts)

			if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
				t.Error("replicas must be 1: one writer per WAL")
			}
			sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
			if err != nil || !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
				t.Errorf("selector %v does not select the pod labels %v (%v)", sts.Spec.Selector, sts.Spec.Template.Labels, err)
			}
			if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType || p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
				t.Error("the WAL's PVC must be retained when the StatefulSet is deleted or scaled")
			}

			// The WAL: a PVC from volumeClaimTemplates, mounted where --wal-dir points.
			if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "wal" {
				t.Fatalf("want one volumeClaimTemplate named wal, have %d", len(sts.Spec.VolumeClaimTemplates))
			}
			pvc := sts.Spec.VolumeClaimTemplates[0].Spec
			if !slices.Contains(pvc.AccessModes, corev1.ReadWriteOnce) || pvc.Resources.Requests.Storage().IsZero() {
				t.Errorf("wal claim: access modes %v, storage %v", pvc.AccessModes, pvc.Resources.Requests.Storage())
			}
			mounts := map[string]corev1.VolumeMount{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = m
			}
			if m, ok := mounts[walMount]; !ok || m.Name != "wal" || m.ReadOnly {
				t.Errorf("the wal claim must be mounted writable at %s: %+v", walMount, m)
			}
			walDir, _ := flagValue(c.Args, "wal-dir")
			if walDir != walMount+"/wal" {
				t.Errorf("--wal-dir=%q, want %s/wal", walDir, walMount)
			}
			maxSize, _ := flagValue(c.Args, "wal-max-size")
			capBytes := pvc.Resources.Requests.Storage().Value()
			if n, err := parseInt(maxSize); err != nil || n <= 0 || n > capBytes*9/10 {
				t.Errorf("--wal-max-size=%q must be set and leave 10%% of the %d-byte claim free (%v)", maxSize, capBytes, err)
			}

			// Security: non-root, read-only root, nothing extra.
			psc := pod.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext: %+v", psc)
			}
			if v.openshift {
				if psc.RunAsUser != nil || psc.RunAsGroup != nil || psc.FSGroup != nil {
					t.Error("OpenShift's restricted-v2 SCC assigns the IDs: runAsUser, runAsGroup and fsGroup must be unset")
				}
			} else if psc.RunAsUser == nil || *psc.RunAsUser != uidNonroot || psc.FSGroup == nil || *psc.FSGroup != uidNonroot {
				t.Errorf("runAsUser and fsGroup must be the image's user %d", uidNonroot)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
				sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 ||
				sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("container securityContext: %+v", sc)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("resources: requests cpu and memory and a memory limit are needed: %+v", c.Resources)
			}
			// GOMEMLIMIT follows the memory limit, so the garbage collector works harder near it
			// instead of the kernel killing the container.
			var memLimit string
			for _, e := range c.Env {
				if f := e.ValueFrom; e.Name == "GOMEMLIMIT" && f != nil && f.ResourceFieldRef != nil && f.ResourceFieldRef.ContainerName == c.Name && f.ResourceFieldRef.Divisor.IsZero() {
					memLimit = f.ResourceFieldRef.Resource
				}
			}
			if memLimit != "limits.memory" {
				t.Errorf("env GOMEMLIMIT must come from the container's limits.memory (resourceFieldRef, default divisor)")
			}

			// Shutdown flushes for --flush-deadline: the kubelet must wait longer.
			fd, ok := flagValue(c.Args, "flush-deadline")
			d, err := time.ParseDuration(fd)
			if !ok || err != nil {
				t.Fatalf("--flush-deadline=%q must be set (%v)", fd, err)
			}
			if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < d+20*time.Second {
				t.Errorf("terminationGracePeriodSeconds %v must exceed --flush-deadline %v by 20s at least", g, d)
			} else if time.Duration(*g)*time.Second > d+30*time.Second || d > 30*time.Second {
				// The flush stops when the hub fails and a healthy hub needs seconds: a long
				// deadline or grace period only keeps a hung pod from restarting (and scraping).
				t.Errorf("terminationGracePeriodSeconds %v and --flush-deadline %v: want a deadline of 30s at most and a grace period at most 30s beyond it", *g, d)
			}

			// Port and probes: --listen's port, named metrics, probed on the binary's paths.
			if !slices.Contains(c.Args, listenArg) {
				t.Errorf("args need %s", listenArg)
			}
			if len(c.Ports) != 1 || c.Ports[0].Name != metricsPort || c.Ports[0].ContainerPort != listenPort {
				t.Errorf("ports %+v, want %s on %d", c.Ports, metricsPort, listenPort)
			}
			for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[name]
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || !portIs(p.HTTPGet.Port, c.Ports[0]) {
					t.Errorf("%s probe %+v, want GET %s on the metrics port", name, p, want)
				}
			}

			// Identity and source: the service account's token reads /federate.
			if pod.ServiceAccountName != one[corev1.ServiceAccount](t, r).Name || (pod.AutomountServiceAccountToken != nil && !*pod.AutomountServiceAccountToken) {
				t.Errorf("serviceAccountName %q must be the ServiceAccount, with its token mounted", pod.ServiceAccountName)
			}
			if tf, _ := flagValue(c.Args, "from-token-file"); tf != tokenPath {
				t.Errorf("--from-token-file=%q, want %s", tf, tokenPath)
			}
			for _, f := range []string{"id", "from", "to-upload", "match-file", "label"} {
				if _, ok := flagValue(c.Args, f); !ok {
					t.Errorf("--%s is missing", f)
				}
			}
			for _, f := range []string{"to-upload-ca", "to-upload-cert", "to-upload-key"} {
				if p, _ := flagValue(c.Args, f); !strings.HasPrefix(p, "/tlscerts/") {
					t.Errorf("--%s=%q, want a file under /tlscerts", f, p)
				}
			}
			caFile, hasCA := flagValue(c.Args, "from-ca-file")
			if hasCA != v.openshift {
				t.Errorf("--from-ca-file=%q: want it on OpenShift (the service CA) only", caFile)
			}

			// Every volume, ConfigMap, Secret and key referenced exists.
			vols := map[string]corev1.Volume{}
			for _, vol := range pod.Volumes {
				vols[vol.Name] = vol
			}
			for _, m := range c.VolumeMounts {
				if m.Name == "wal" {
					continue
				}
				vol, ok := vols[m.Name]
				if !ok {
					t.Errorf("mount %s: no volume %s", m.MountPath, m.Name)
					continue
				}
				if !m.ReadOnly {
					t.Errorf("mount %s: only the WAL is writable", m.MountPath)
				}
				switch {
				case vol.ConfigMap != nil:
					cm := configMap(t, r, vol.ConfigMap.Name)
					for _, it := range vol.ConfigMap.Items {
						if _, ok := cm.Data[it.Key]; !ok {
							t.Errorf("volume %s: ConfigMap %s has no key %s", vol.Name, cm.Name, it.Key)
						}
					}
					if cm.Annotations[injectCA] == "true" && (!hasCA || caFile != m.MountPath+"/service-ca.crt") {
						t.Errorf("the service CA is mounted at %s but --from-ca-file=%q", m.MountPath, caFile)
					}
				case vol.Secret != nil:
					found := false
					for _, s := range all[corev1.Secret](r) {
						found = found || s.Name == vol.Secret.SecretName
					}
					if !found {
						t.Errorf("volume %s: no Secret %s", vol.Name, vol.Secret.SecretName)
					}
				default:
					t.Errorf("volume %s: unexpected source", vol.Name)
				}
			}
			for _, e := range c.Env {
				if ref := e.ValueFrom; ref != nil && ref.ConfigMapKeyRef != nil {
					if _, ok := configMap(t, r, ref.ConfigMapKeyRef.Name).Data[ref.ConfigMapKeyRef.Key]; !ok {
						t.Errorf("env %s: ConfigMap %s has no key %s", e.Name, ref.ConfigMapKeyRef.Name, ref.ConfigMapKeyRef.Key)
					}
				}
			}
		})
	}
}

func portIs(p intstr.IntOrString, cp corev1.ContainerPort) bool {
	if p.Type == intstr.String {
		return p.StrVal == cp.Name
	}
	return p.IntVal == cp.ContainerPort
}

func TestServiceAndServiceMonitor(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r := mustRender(t, v.dir)
			sts := one[appsv1.StatefulSet](t, r)
			svc := one[corev1.Service](t, r)
			sm := one[serviceMonitor](t, r)
			if sts.Spec.ServiceName != svc.Name {
				t.Errorf("serviceName %q, Service %q", sts.Spec.ServiceName, svc.Name)
			}
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) {
				t.Errorf("Service selector %v does not select the pod", svc.Spec.Selector)
			}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != metricsPort || !portIs(svc.Spec.Ports[0].TargetPort, container(t, sts).Ports[0]) {
				t.Errorf("Service ports %+v, want %s to the container's metrics port", svc.Spec.Ports, metricsPort)
			}
			sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
			if err != nil || !sel.Matches(labels.Set(svc.Labels)) {
				t.Errorf("ServiceMonitor selector does not select the Service (%v)", err)
			}
			if !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, svc.Namespace) {
				t.Errorf("ServiceMonitor namespaces %v miss %s", sm.Spec.NamespaceSelector.MatchNames, svc.Namespace)
			}
			if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != metricsPort || sm.Spec.Endpoints[0].Path != "/metrics" {
				t.Fatalf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
			}
			// collector's metrics carry an endpoint label: the operator's must go.
			dropped := false
			for _, rl := range sm.Spec.Endpoints[0].Relabelings {
				dropped = dropped || (strings.EqualFold(rl.Action, "labeldrop") && rl.Regex == "endpoint")
			}
			if !dropped && !sm.Spec.Endpoints[0].HonorLabels {
				t.Error("the target label endpoint would rename collector's endpoint label to exported_endpoint")
			}
		})
	}
}

func TestRBAC(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r := mustRender(t, v.dir)
			sa := one[corev1.ServiceAccount](t, r)
			roles := map[string]rbacv1.ClusterRole{}
			for _, cr := range all[rbacv1.ClusterRole](r) {
				roles[cr.Name] = cr
			}
			federate := false
			for _, b := range all[rbacv1.ClusterRoleBinding](r) {
				boundToSA := slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
					return s.Kind == "ServiceAccount" && s.Name == sa.Name && s.Namespace == sa.Namespace
				})
				if !boundToSA || b.RoleRef.Kind != "ClusterRole" {
					continue
				}
				if v.openshift {
					federate = federate || b.RoleRef.Name == "cluster-monitoring-view"
					continue
				}
				for _, rule := range roles[b.RoleRef.Name].Rules {
					federate = federate || (slices.Contains(rule.NonResourceURLs, "/federate") && slices.Contains(rule.Verbs, "get"))
				}
			}
			if !federate {
				t.Error("no binding lets the service account get /federate")
			}
			if v.openshift && len(roles) > 0 {
				t.Errorf("OpenShift uses cluster-monitoring-view; the overlay must delete %v", slices.Sorted(maps.Keys(roles)))
			}
		})
	}
}

// TestPrometheusRuleMatchesRuleFile keeps the operator's copy of the alerts equal to the file
// promtool tests.
func TestPrometheusRuleMatchesRuleFile(t *testing.T) {
	r := mustRender(t, "kubernetes")
	pr := one[prometheusRule](t, r)
	file := loadRuleFile(t)
	if !reflect.DeepEqual(pr.Spec.Groups, file) {
		a, _ := json.MarshalIndent(pr.Spec.Groups, "", " ")
		b, _ := json.MarshalIndent(file, "", " ")
		t.Errorf("kubernetes/base/prometheusrule.yaml and monitoring/collector-alerts.yaml differ:\n%s\n%s", a, b)
	}
}

// TestWALCapAgrees keeps the dashboard's cap equal to the StatefulSet's, and the alert on the cap
// the agent exports (collector_wal_max_size_bytes), so that it follows the flag.
func TestWALCapAgrees(t *testing.T) {
	sts := one[appsv1.StatefulSet](t, mustRender(t, "kubernetes"))
	maxSize, _ := flagValue(container(t, sts).Args, "wal-max-size")
	var near rule
	for _, g := range loadRuleFile(t) {
		for _, rl := range g.Rules {
			if rl.Alert == "CollectorWALNearCap" {
				near = rl
			}
		}
	}
	if !strings.Contains(near.Expr, "collector_wal_max_size_bytes > 0") {
		t.Errorf("CollectorWALNearCap %q does not compare with the exported cap collector_wal_max_size_bytes", near.Expr)
	}
	d := loadDashboard(t)
	for _, v := range d.vars() {
		if v.Name == "wal_max_size" && v.Query != maxSize {
			t.Errorf("dashboard variable wal_max_size = %v, want %s", v.Query, maxSize)
		}
	}
}
