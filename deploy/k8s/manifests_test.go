// Package k8s_test checks the wiring of the Kubernetes manifests in this
// directory: selectors, ports, probes, the config mount, the security
// context, and the embedded portmux.yaml, validated by the config package
// as the pod would load it.
package k8s_test

import (
	"maps"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/portmux/portmux/config"
	"go.yaml.in/yaml/v3"
)

// selects reports whether a selector's labels all appear in labels (and
// it is not empty, which would select everything).
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// portOf resolves a port reference (name or number) among a container's
// ports.
func portOf(ports []containerPort, ref string) (containerPort, bool) {
	for _, p := range ports {
		if p.Name == ref || strconv.Itoa(p.ContainerPort) == ref {
			return p, true
		}
	}
	return containerPort{}, false
}

// listenPort returns the port of a host:port address.
func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// argValue returns the value after flag in args, or "".
func argValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// TestKustomization: every manifest file is applied by kubectl apply -k.
func TestKustomization(t *testing.T) {
	m := load(t)
	var k kustomization
	m.get(t, "Kustomization", "", &k)
	files := map[string]bool{}
	for _, o := range m.all {
		if o.Kind != "Kustomization" {
			files[o.file] = true
		}
	}
	if got, want := slices.Sorted(slices.Values(k.Resources)), slices.Sorted(maps.Keys(files)); !slices.Equal(got, want) {
		t.Errorf("kustomization resources %q; want the manifest files %q", got, want)
	}
}

// TestPortmuxDeployment checks the Deployment against the Service, the
// PodDisruptionBudget, the ConfigMap and the portmux config inside it.
func TestPortmuxDeployment(t *testing.T) {
	m := load(t)
	var dep deployment
	m.get(t, "Deployment", "portmux", &dep)
	pod := dep.Spec.Template.Spec
	labels := dep.Spec.Template.Metadata.Labels
	if dep.Spec.Replicas != 3 {
		t.Errorf("replicas %d; want 3", dep.Spec.Replicas)
	}
	if !selects(dep.Spec.Selector.MatchLabels, labels) {
		t.Errorf("deployment selector %v does not select its pods %v", dep.Spec.Selector.MatchLabels, labels)
	}
	for _, c := range pod.TopologySpreadConstraints {
		if !selects(c.LabelSelector.MatchLabels, labels) {
			t.Errorf("topology spread selector %v does not select the pods %v", c.LabelSelector.MatchLabels, labels)
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != "portmux" && !strings.HasPrefix(c.Image, "portmux:") {
		t.Errorf("image %q; want portmux", c.Image)
	}

	// Command line: run -c <file> --watch.
	cfgPath := argValue(c.Args, "-c")
	if len(c.Args) == 0 || c.Args[0] != "run" || cfgPath == "" || !slices.Contains(c.Args, "--watch") {
		t.Fatalf("args %q; want run -c <file> --watch", c.Args)
	}

	// The config file comes from the ConfigMap, mounted as a directory
	// (a subPath mount would never see updates, and --watch follows them).
	var cm configMap
	var mounted bool
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != path.Dir(cfgPath) && vm.MountPath != cfgPath {
			continue
		}
		mounted = true
		if vm.SubPath != "" || vm.MountPath != path.Dir(cfgPath) {
			t.Errorf("config mounted at %s (subPath %q); want the directory %s without subPath, so updates reach the pod",
				vm.MountPath, vm.SubPath, path.Dir(cfgPath))
		}
		var cmName string
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil {
				cmName = v.ConfigMap.Name
			}
		}
		if cmName == "" {
			t.Fatalf("volume %q mounted at %s is not a ConfigMap", vm.Name, vm.MountPath)
		}
		m.get(t, "ConfigMap", cmName, &cm)
	}
	if !mounted {
		t.Fatalf("nothing is mounted at %s, the -c path's directory", path.Dir(cfgPath))
	}
	doc, ok := cm.Data[path.Base(cfgPath)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q (the -c file); keys %v", cm.Metadata.Name, path.Base(cfgPath), slices.Collect(maps.Keys(cm.Data)))
	}

	// The config validates as the pod loads it: with the container's
	// environment, which overrides the file.
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		t.Setenv(e.Name, e.Value)
	}
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("portmux.yaml in ConfigMap %s: %v", cm.Metadata.Name, err)
	}

	// Ports: every listen address and the admin listener are container
	// ports; the admin listener is reachable for the probes.
	var portNums []int
	for _, p := range c.Ports {
		portNums = append(portNums, p.ContainerPort)
	}
	var listenPorts []int
	for _, l := range cfg.Listen {
		p := listenPort(t, l)
		listenPorts = append(listenPorts, p)
		if !slices.Contains(portNums, p) {
			t.Errorf("listen %s: port %d is not a containerPort %v", l, p, portNums)
		}
	}
	if cfg.Admin.Listen == "" {
		t.Fatal("admin.listen is off: the probes need it")
	}
	adminPort := listenPort(t, cfg.Admin.Listen)
	if !slices.Contains(portNums, adminPort) {
		t.Errorf("admin.listen %s: port %d is not a containerPort %v", cfg.Admin.Listen, adminPort, portNums)
	}
	if host, _, _ := net.SplitHostPort(cfg.Admin.Listen); host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("admin.listen %s: the kubelet probes the pod IP; want 0.0.0.0", cfg.Admin.Listen)
	}
	for _, pr := range []struct {
		name, path string
		p          *probe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet of %s", pr.name, pr.path)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("%s probe path %q; want %q", pr.name, pr.p.HTTPGet.Path, pr.path)
		}
		if p, ok := portOf(c.Ports, pr.p.HTTPGet.Port); !ok || p.ContainerPort != adminPort {
			t.Errorf("%s probe port %q; want the admin port %d", pr.name, pr.p.HTTPGet.Port, adminPort)
		}
	}

	// Security context (container settings override the pod's).
	eff := securityContext{}
	for _, sc := range []*securityContext{pod.SecurityContext, c.SecurityContext} {
		if sc == nil {
			continue
		}
		if sc.RunAsNonRoot != nil {
			eff.RunAsNonRoot = sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			eff.RunAsUser = sc.RunAsUser
		}
		if sc.ReadOnlyRootFilesystem != nil {
			eff.ReadOnlyRootFilesystem = sc.ReadOnlyRootFilesystem
		}
		if sc.AllowPrivilegeEscalation != nil {
			eff.AllowPrivilegeEscalation = sc.AllowPrivilegeEscalation
		}
		if sc.Capabilities != nil {
			eff.Capabilities = sc.Capabilities
		}
	}
	switch {
	case eff.RunAsNonRoot == nil || !*eff.RunAsNonRoot:
		t.Error("runAsNonRoot: want true")
	case eff.RunAsUser == nil || *eff.RunAsUser != 65532:
		t.Error("runAsUser: want 65532 (the image's user)")
	case eff.ReadOnlyRootFilesystem == nil || !*eff.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem: want true")
	case c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation: want false on the container")
	case eff.Capabilities == nil || !slices.Contains(eff.Capabilities.Drop, "ALL"):
		t.Error("capabilities: want drop [ALL]")
	}
	privileged := slices.ContainsFunc(listenPorts, func(p int) bool { return p < 1024 })
	if eff.Capabilities != nil {
		add := eff.Capabilities.Add
		if privileged && !slices.Equal(add, []string{"NET_BIND_SERVICE"}) {
			t.Errorf("capabilities add %q: a port below 1024 needs exactly NET_BIND_SERVICE", add)
		}
		if !privileged && len(add) != 0 {
			t.Errorf("capabilities add %q: every port is above 1023, want none", add)
		}
	}

	// The public Service reaches the mux port (not the admin one).
	var svc service
	m.get(t, "Service", "portmux", &svc)
	if svc.Spec.Type != "LoadBalancer" {
		t.Errorf("service type %q; want LoadBalancer", svc.Spec.Type)
	}
	if !selects(svc.Spec.Selector, labels) {
		t.Errorf("service selector %v does not select the pods %v", svc.Spec.Selector, labels)
	}
	var has443 bool
	for _, sp := range svc.Spec.Ports {
		target := sp.TargetPort
		if target == "" {
			target = strconv.Itoa(sp.Port)
		}
		p, ok := portOf(c.Ports, target)
		switch {
		case !ok:
			t.Errorf("service port %d: targetPort %q is no containerPort", sp.Port, target)
		case !slices.Contains(listenPorts, p.ContainerPort):
			t.Errorf("service port %d: targetPort %q (%d) is not a listen port %v", sp.Port, target, p.ContainerPort, listenPorts)
		}
		has443 = has443 || (sp.Port == 443 && ok && p.ContainerPort == 8443)
	}
	if !has443 {
		t.Error("service: want port 443 to the container's 8443")
	}

	var budget pdb
	m.get(t, "PodDisruptionBudget", "portmux", &budget)
	if !selects(budget.Spec.Selector.MatchLabels, labels) {
		t.Errorf("PDB selector %v does not select the pods %v", budget.Spec.Selector.MatchLabels, labels)
	}
	if budget.Spec.MinAvailable != 2 || budget.Spec.MinAvailable >= dep.Spec.Replicas {
		t.Errorf("PDB minAvailable %d with %d replicas; want 2 (below the replicas, or no node could drain)", budget.Spec.MinAvailable, dep.Spec.Replicas)
	}

	// Storage: the shared Redis, the same in the file and in the
	// environment that overrides it, served by the redis Service.
	if !strings.HasPrefix(cfg.TLS.Storage, "redis://") && !strings.HasPrefix(cfg.TLS.Storage, "rediss://") {
		t.Fatalf("tls.storage %q; want the shared Redis", cfg.TLS.Storage)
	}
	var file struct {
		TLS struct {
			Storage string `yaml:"storage"`
		} `yaml:"tls"`
	}
	if err := yaml.Unmarshal([]byte(doc), &file); err != nil {
		t.Fatal(err)
	}
	if v, ok := env["PORTMUX_TLS__STORAGE"]; !ok || v != file.TLS.Storage {
		t.Errorf("PORTMUX_TLS__STORAGE %q, tls.storage %q: want both set and equal (the image's default storage env would win over the file)", v, file.TLS.Storage)
	}
	u, err := url.Parse(cfg.TLS.Storage)
	if err != nil {
		t.Fatal(err)
	}
	var redisSvc service
	m.get(t, "Service", u.Hostname(), &redisSvc)
	redisPort := u.Port()
	if redisPort == "" {
		redisPort = "6379"
	}
	if !slices.ContainsFunc(redisSvc.Spec.Ports, func(p servicePort) bool { return strconv.Itoa(p.Port) == redisPort }) {
		t.Errorf("service %s has no port %s", u.Hostname(), redisPort)
	}
}

// TestRedis checks the Redis Deployment against its Service and the
// NetworkPolicy that lets only portmux pods in.
func TestRedis(t *testing.T) {
	m := load(t)
	var dep, portmux deployment
	m.get(t, "Deployment", "redis", &dep)
	m.get(t, "Deployment", "portmux", &portmux)
	labels := dep.Spec.Template.Metadata.Labels
	if !selects(dep.Spec.Selector.MatchLabels, labels) {
		t.Errorf("redis deployment selector %v does not select its pods %v", dep.Spec.Selector.MatchLabels, labels)
	}
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("want one redis container")
	}
	c := dep.Spec.Template.Spec.Containers[0]

	var svc service
	m.get(t, "Service", "redis", &svc)
	if !selects(svc.Spec.Selector, labels) {
		t.Errorf("redis service selector %v does not select the redis pods %v", svc.Spec.Selector, labels)
	}
	for _, sp := range svc.Spec.Ports {
		if _, ok := portOf(c.Ports, sp.TargetPort); !ok {
			t.Errorf("redis service targetPort %q is no containerPort", sp.TargetPort)
		}
	}
	var public service
	m.get(t, "Service", "portmux", &public)
	if selects(public.Spec.Selector, labels) {
		t.Error("the public service also selects the redis pods")
	}

	var np networkPolicy
	m.get(t, "NetworkPolicy", "redis", &np)
	if !selects(np.Spec.PodSelector.MatchLabels, labels) {
		t.Errorf("network policy selector %v does not select the redis pods", np.Spec.PodSelector.MatchLabels)
	}
	var admitted bool
	for _, in := range np.Spec.Ingress {
		for _, from := range in.From {
			if from.PodSelector != nil && selects(from.PodSelector.MatchLabels, portmux.Spec.Template.Metadata.Labels) {
				for _, p := range in.Ports {
					_, ok := portOf(c.Ports, p.Port)
					admitted = admitted || ok
				}
			}
		}
	}
	if !admitted {
		t.Error("the network policy does not let portmux pods reach the redis port")
	}
}
