package deploy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The pod, simulated: the files the kubelet would mount (ConfigMap keys, Secrets filled with test
// certificates, the service-account token, the service CA OpenShift injects, the PVC) under a
// temporary root, the environment the container would get, and its arguments with $(VAR)
// expanded and every absolute path moved under that root. A path that is on no volume fails the
// test: the image's root filesystem is read-only and holds nothing but the binary.

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key in PEM, for 127.0.0.1 (server) or a client.
func (c *ca) issue(t *testing.T, name string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func (c *ca) serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	cp, kp := c.issue(t, "127.0.0.1", true)
	pair, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// pki is every certificate the pod needs.
type pki struct {
	hub     *ca // signs the receiver's certificate (Secret collector-hub-ca)
	clients *ca // signs collector's client certificate (Secret collector-hub-client-cert)
	service *ca // OpenShift's service CA: signs the source's certificate
	secrets map[string]map[string][]byte
	token   string
}

func newPKI(t *testing.T) *pki {
	p := &pki{hub: newCA(t, "hub"), clients: newCA(t, "hub clients"), service: newCA(t, "service-ca"), token: "test-token-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	cp, kp := p.clients.issue(t, "managed cluster", false)
	p.secrets = map[string]map[string][]byte{
		"collector-hub-ca":          {"ca.crt": p.hub.pem},
		"collector-hub-client-cert": {"tls.crt": cp, "tls.key": kp},
		// The same material under the names of RHACM's Secrets (overlays/rhacm).
		rhacmCASecret:         {"ca.crt": p.hub.pem},
		rhacmClientCertSecret: {"tls.crt": cp, "tls.key": kp},
	}
	return p
}

// pod is a container's process as the kubelet would start it.
type pod struct {
	root    string   // stands for / of the container's filesystem view
	rootfs  string   // working directory: must stay empty
	args    []string // after expansion and path rewriting, without --listen
	env     []string
	listen  string // the port --listen named, as given
	walDir  string // host path of --wal-dir
	written map[string]bool
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// newPod lays out the StatefulSet's pod from the rendered objects. configOverride replaces keys
// of ConfigMaps (the source and hub URLs point at the test's servers).
func newPod(t *testing.T, r *rendered, p *pki, configOverride map[string]string) *pod {
	t.Helper()
	sts := one[appsv1.StatefulSet](t, r)
	c := container(t, sts)
	spec := sts.Spec.Template.Spec
	pd := &pod{root: t.TempDir(), written: map[string]bool{}}
	pd.rootfs = filepath.Join(pd.root, "rootfs")
	for _, d := range []string{pd.rootfs, filepath.Join(pd.root, "tmp"), filepath.Join(pd.root, "home")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path string, data []byte) {
		host := filepath.Join(pd.root, path)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(host, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pd.written[host] = true
	}
	cmData := func(name string) map[string]string {
		cm := configMap(t, r, name)
		data := map[string]string{}
		for k, v := range cm.Data {
			data[k] = v
		}
		for k, v := range configOverride {
			if _, ok := data[k]; ok {
				data[k] = v
			}
		}
		if cm.Annotations[injectCA] == "true" {
			data["service-ca.crt"] = string(p.service.pem)
		}
		return data
	}

	// Volumes.
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	var mounts []string
	for _, m := range c.VolumeMounts {
		mounts = append(mounts, m.MountPath)
		if m.Name == sts.Spec.VolumeClaimTemplates[0].Name {
			if err := os.MkdirAll(filepath.Join(pd.root, m.MountPath), 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		v := vols[m.Name]
		switch {
		case v.ConfigMap != nil:
			data := cmData(v.ConfigMap.Name)
			if len(v.ConfigMap.Items) == 0 {
				for k, val := range data {
					write(m.MountPath+"/"+k, []byte(val))
				}
			}
			for _, it := range v.ConfigMap.Items {
				write(m.MountPath+"/"+it.Path, []byte(data[it.Key]))
			}
		case v.Secret != nil:
			material, ok := p.secrets[v.Secret.SecretName]
			if !ok {
				t.Fatalf("volume %s: the test has no material for Secret %s", v.Name, v.Secret.SecretName)
			}
			var keys []string
			rendered := false
			for _, s := range all[corev1.Secret](r) {
				if s.Name == v.Secret.SecretName {
					keys, rendered = strings.Fields(s.Annotations[keysAnno]), true
				}
			}
			if !rendered {
				// A Secret the kustomization uses but does not create (RHACM's operator owns
				// it): the keys are the test's.
				keys = slices.Sorted(maps.Keys(material))
			}
			if len(keys) != len(material) {
				t.Errorf("Secret %s documents keys %v, the test fills %d", v.Secret.SecretName, keys, len(material))
			}
			for _, k := range keys {
				if _, ok := material[k]; !ok {
					t.Errorf("Secret %s: key %s unknown to the test", v.Secret.SecretName, k)
				}
				write(m.MountPath+"/"+k, material[k])
			}
		default:
			t.Fatalf("volume %s: unsupported source", m.Name)
		}
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		dir := filepath.Dir(tokenPath)
		mounts = append(mounts, dir)
		write(tokenPath, []byte(p.token))
		write(dir+"/ca.crt", p.service.pem)
		write(dir+"/namespace", []byte(sts.Namespace))
	}

	// Environment, in order, as the kubelet builds it.
	env := map[string]string{}
	expand := func(s string) string {
		return varRef.ReplaceAllStringFunc(s, func(ref string) string {
			if v, ok := env[ref[2:len(ref)-1]]; ok {
				return v
			}
			return ref
		})
	}
	for _, e := range c.Env {
		val := expand(e.Value)
		if f := e.ValueFrom; f != nil {
			switch {
			case f.ConfigMapKeyRef != nil:
				val = cmData(f.ConfigMapKeyRef.Name)[f.ConfigMapKeyRef.Key]
			case f.ResourceFieldRef != nil && f.ResourceFieldRef.Resource == "limits.memory":
				val = strconv.FormatInt(c.Resources.Limits.Memory().Value(), 10)
			default:
				t.Fatalf("env %s: unsupported valueFrom", e.Name)
			}
		}
		env[e.Name] = val
		pd.env = append(pd.env, e.Name+"="+val)
	}
	pd.env = append(pd.env, "HOME="+filepath.Join(pd.root, "home"), "TMPDIR="+filepath.Join(pd.root, "tmp"))

	// Arguments.
	for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
		a = expand(a)
		if m := varRef.FindString(a); m != "" {
			t.Errorf("argument %q: %s is not defined in env", a, m)
		}
		name, val, ok := strings.Cut(a, "=")
		if name == "--listen" {
			pd.listen = val
			continue
		}
		if ok && strings.HasPrefix(val, "/") {
			onVolume := false
			for _, m := range mounts {
				onVolume = onVolume || strings.HasPrefix(val, m+"/")
			}
			if !onVolume {
				t.Errorf("argument %s: %s is on no volume (the root filesystem is read-only)", name, val)
			}
			val = filepath.Join(pd.root, val)
			a = name + "=" + val
			if name == "--wal-dir" {
				pd.walDir = val
			} else if _, err := os.Stat(val); err != nil {
				t.Errorf("argument %s: no such file in the pod: %v", name, err)
			}
		}
		pd.args = append(pd.args, a)
	}
	return pd
}

// strayWrites returns the files the process created outside the WAL's volume.
func (pd *pod) strayWrites(t *testing.T, walMountHost string) []string {
	t.Helper()
	var stray []string
	err := filepath.WalkDir(pd.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == walMountHost {
			return filepath.SkipDir
		}
		if !d.IsDir() && !pd.written[p] {
			stray = append(stray, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return stray
}

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (pd *pod) String() string {
	return fmt.Sprintf("collector %s", strings.Join(pd.args, " "))
}
