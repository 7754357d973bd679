package k8s_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The subset of the Kubernetes objects these tests read.
type (
	meta struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	labelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	containerPort struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"` // a name or a number
		} `yaml:"httpGet"`
		TCPSocket *struct {
			Port string `yaml:"port"`
		} `yaml:"tcpSocket"`
	}
	securityContext struct {
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		Capabilities             *struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		Ports        []containerPort `yaml:"ports"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			SubPath   string `yaml:"subPath"`
		} `yaml:"volumeMounts"`
		ReadinessProbe  *probe           `yaml:"readinessProbe"`
		LivenessProbe   *probe           `yaml:"livenessProbe"`
		SecurityContext *securityContext `yaml:"securityContext"`
	}
	podSpec struct {
		SecurityContext           *securityContext `yaml:"securityContext"`
		Containers                []container      `yaml:"containers"`
		TopologySpreadConstraints []struct {
			LabelSelector labelSelector `yaml:"labelSelector"`
		} `yaml:"topologySpreadConstraints"`
		Volumes []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
		} `yaml:"volumes"`
	}
	deployment struct {
		Metadata meta `yaml:"metadata"`
		Spec     struct {
			Replicas int           `yaml:"replicas"`
			Selector labelSelector `yaml:"selector"`
			Template struct {
				Metadata meta    `yaml:"metadata"`
				Spec     podSpec `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	servicePort struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort string `yaml:"targetPort"` // a name or a number
	}
	service struct {
		Metadata meta `yaml:"metadata"`
		Spec     struct {
			Type     string            `yaml:"type"`
			Selector map[string]string `yaml:"selector"`
			Ports    []servicePort     `yaml:"ports"`
		} `yaml:"spec"`
	}
	configMap struct {
		Metadata meta              `yaml:"metadata"`
		Data     map[string]string `yaml:"data"`
	}
	pdb struct {
		Metadata meta `yaml:"metadata"`
		Spec     struct {
			MinAvailable int           `yaml:"minAvailable"`
			Selector     labelSelector `yaml:"selector"`
		} `yaml:"spec"`
	}
	networkPolicy struct {
		Metadata meta `yaml:"metadata"`
		Spec     struct {
			PodSelector labelSelector `yaml:"podSelector"`
			Ingress     []struct {
				From []struct {
					PodSelector *labelSelector `yaml:"podSelector"`
				} `yaml:"from"`
				Ports []struct {
					Port string `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	kustomization struct {
		Resources []string `yaml:"resources"`
	}
)

// object is one document of a manifest file.
type object struct {
	file       string
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	node       *yaml.Node
}

// manifests are the objects of every YAML file here, by kind and name.
type manifests struct {
	all []object
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var o object
			if err := n.Decode(&o); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" || o.APIVersion == "" {
				t.Fatalf("%s: a document without kind or apiVersion", f)
			}
			o.file, o.node = f, &n
			m.all = append(m.all, o)
		}
	}
	return m
}

// get decodes the one object of kind and name into v.
func (m *manifests) get(t *testing.T, kind, name string, v any) {
	t.Helper()
	var found []object
	for _, o := range m.all {
		if o.Kind == kind && o.Metadata.Name == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s objects named %q; want 1", len(found), kind, name)
	}
	if err := found[0].node.Decode(v); err != nil {
		t.Fatalf("%s %s: %v", kind, name, err)
	}
}
