// Package deploy holds how collector is deployed and watched, and the tests that keep those files
// true to the binary:
//
//   - kubernetes/base: a kustomize base (StatefulSet with a PVC per WAL, RBAC for /federate,
//     ConfigMap, hub TLS Secrets, Service, ServiceMonitor, PrometheusRule);
//     kubernetes/overlays/openshift adapts it to OpenShift's platform monitoring;
//     kubernetes/overlays/rhacm (standalone) runs collector in place of RHACM's
//     metrics-collector-deployment, with the operator's command line, as a StatefulSet with a PVC.
//   - monitoring: the Grafana dashboard, the alert rules and their promtool unit tests.
//
// The package has no code. Its tests render the kustomizations with kustomize itself
// (sigs.k8s.io/kustomize/api, the library behind kubectl apply -k, in process), decode every
// object strictly into the Kubernetes API types, start the real binary with the StatefulSet's arguments against
// files laid out as the pod's volumes would be, check the probes against it, check every metric
// the dashboard and the rules query against its /metrics, and run promtool on the rules.
// promtool must be installed (make deps).
package deploy
