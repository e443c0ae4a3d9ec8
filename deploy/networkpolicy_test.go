package deploy

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestNetworkPolicy: the pod's port admits only the namespace of the monitoring stack; egress is
// not restricted.
func TestNetworkPolicy(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r := mustRender(t, v.dir)
			np := one[networkingv1.NetworkPolicy](t, r)
			sts := one[appsv1.StatefulSet](t, r)
			pod, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || pod.Empty() || !pod.Matches(labels.Set(sts.Spec.Template.Labels)) {
				t.Errorf("podSelector %v does not select the collector pod (%v)", np.Spec.PodSelector, err)
			}
			if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Egress) != 0 {
				t.Errorf("policyTypes %v, egress %v: want ingress only (egress unrestricted)", np.Spec.PolicyTypes, np.Spec.Egress)
			}
			if len(np.Spec.Ingress) != 1 {
				t.Fatalf("%d ingress rules, want 1", len(np.Spec.Ingress))
			}
			rule := np.Spec.Ingress[0]
			c := container(t, sts)
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--web.enable-lifecycle") {
					t.Errorf("the manifests enable the lifecycle API (%s): POST /-/reload would be open to the monitoring namespace", a)
				}
			}
			if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || !portIs(*rule.Ports[0].Port, c.Ports[0]) ||
				rule.Ports[0].Protocol == nil || *rule.Ports[0].Protocol != corev1.ProtocolTCP || c.Ports[0].ContainerPort != listenPort {
				t.Errorf("ingress ports %+v, want only the container's metrics port %d", rule.Ports, listenPort)
			}
			if len(rule.From) != 1 || rule.From[0].PodSelector != nil || rule.From[0].IPBlock != nil || rule.From[0].NamespaceSelector == nil {
				t.Fatalf("ingress from %+v, want one namespaceSelector", rule.From)
			}
			ns, err := metav1.LabelSelectorAsSelector(rule.From[0].NamespaceSelector)
			if err != nil || ns.Empty() {
				t.Fatalf("namespaceSelector %v selects every namespace (%v)", rule.From[0].NamespaceSelector, err)
			}
			nsLabels := func(name string) labels.Set { return labels.Set{"kubernetes.io/metadata.name": name} }
			if !ns.Matches(nsLabels(v.monitoring)) {
				t.Errorf("namespaceSelector %v does not admit %s", ns, v.monitoring)
			}
			for _, other := range []string{"default", "collector", "monitoring", "openshift-monitoring"} {
				if other != v.monitoring && ns.Matches(nsLabels(other)) {
					t.Errorf("namespaceSelector %v admits %s", ns, other)
				}
			}
		})
	}
}
