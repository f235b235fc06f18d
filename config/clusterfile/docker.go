package clusterfile

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/pgha/pgha/config"
)

// dockerEngine checks runtime "docker"'s engine: host, its TLS files and
// the address node ports are published on, and sets bind's default for a
// tcp:// engine.
//
// The TLS files are ca_file, cert_file and key_file, as authority "etcd"
// names them: one vocabulary in one file, each file visible where it is
// read. They are Docker's ca.pem, cert.pem and key.pem, the three files
// DOCKER_CERT_PATH holds and `docker --tlsverify` reads.
//
// A tcp:// engine without them is an error unless the file says
// insecure_tcp = true. Docker refuses nothing there (dockerd only warns),
// but its API is root on its host for whoever reaches the port; a plan
// warning would scroll past, a diagnostic makes the choice a line someone
// wrote and a reviewer reads.
func (d *decoder) dockerEngine(dk *config.Docker) {
	hostRange := d.rangeOf(&dk.Host, d.dockerRange)
	tcp, socket, bad := false, false, false
	if dk.Host != "" {
		scheme, rest, _ := strings.Cut(dk.Host, "://")
		switch scheme {
		case "tcp":
			u, err := url.Parse(dk.Host)
			if err != nil || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
				d.errorAt(hostRange, "Invalid Docker host",
					fmt.Sprintf("host = %s is not tcp://HOST:PORT; write for example \"tcp://10.0.0.5:2376\" (2376 is Docker's port for TLS).", d.show(&dk.Host, dk.Host)))
				bad = true
				break
			}
			tcp = true
		case "unix", "npipe":
			socket = true
			if rest == "" {
				d.errorAt(hostRange, "Invalid Docker host",
					fmt.Sprintf("host = %s names no socket; write for example \"unix:///var/run/docker.sock\".", d.show(&dk.Host, dk.Host)))
			}
		case "ssh":
			bad = true
			d.errorAt(hostRange, "Unsupported Docker host",
				"pgha does not reach Docker engines over ssh:// yet. Expose the engine over TLS (dockerd --tlsverify -H tcp://0.0.0.0:2376, README.md \"A Docker engine on another host\") and write host = \"tcp://HOST:2376\" with ca_file, cert_file and key_file.")
		default:
			bad = true
			d.errorAt(hostRange, "Invalid Docker host",
				fmt.Sprintf("host = %s is not a Docker engine address; write \"unix:///var/run/docker.sock\" or \"tcp://HOST:2376\", as DOCKER_HOST does.", d.show(&dk.Host, dk.Host)))
		}
	}

	files := map[string]string{"ca_file": dk.CAFile, "cert_file": dk.CertFile, "key_file": dk.KeyFile}
	var given, missing []string
	for _, k := range []string{"ca_file", "cert_file", "key_file"} {
		if files[k] != "" {
			given = append(given, k)
		} else {
			missing = append(missing, k)
		}
	}
	switch {
	case bad:
		// reported above; the files cannot be judged without a host
	case len(given) > 0 && socket:
		d.errorAt(hostRange, "TLS files with a local socket",
			fmt.Sprintf("%s declared, but host = %s is a local socket, which Docker reaches without TLS: write host = \"tcp://HOST:2376\", or remove the files.", declared(given), d.show(&dk.Host, dk.Host)))
	case len(given) > 0 && dk.Host == "":
		d.errorAt(d.dockerRange, "TLS files without a host",
			fmt.Sprintf("%s declared, but no host says which engine they are for: write host = \"tcp://HOST:2376\".", declared(given)))
	case len(given) > 0 && len(missing) > 0:
		d.errorAt(d.dockerRange, "Incomplete Docker TLS files",
			fmt.Sprintf("Mutual TLS with the engine needs ca_file (the CA that signed the engine's certificate), cert_file and key_file (pgha's client certificate); add %s. They are Docker's ca.pem, cert.pem and key.pem.", strings.Join(missing, " and ")))
	case len(given) > 0 && dk.InsecureTCP:
		d.errorAt(d.rangeOf(&dk.InsecureTCP, d.dockerRange), "insecure_tcp with TLS files",
			"insecure_tcp = true says the engine is reached without TLS, but ca_file, cert_file and key_file are declared: remove insecure_tcp.")
	case tcp && len(given) == 0 && !dk.InsecureTCP:
		d.errorAt(hostRange, "Docker engine without TLS",
			fmt.Sprintf("host = %s is reached over plain TCP: whoever reaches that port drives the engine, which is root on its host, and pgha's passwords cross the network in clear. "+
				"Run the engine with --tlsverify and declare ca_file, cert_file and key_file (Docker's ca.pem, cert.pem and key.pem); "+
				"on a network where that is acceptable, say so with insecure_tcp = true.", d.show(&dk.Host, dk.Host)))
	case dk.InsecureTCP && socket:
		d.errorAt(d.rangeOf(&dk.InsecureTCP, d.dockerRange), "insecure_tcp without a tcp:// host",
			fmt.Sprintf("insecure_tcp concerns an engine reached over TCP, and host = %s is not one: remove it.", d.show(&dk.Host, dk.Host)))
	}

	bindRange := d.rangeOf(&dk.Bind, d.dockerRange)
	if dk.Bind != "" {
		if _, ok := config.ParseIP(dk.Bind); !ok {
			d.errorAt(bindRange, "Invalid bind",
				fmt.Sprintf("bind = %s is not an IP address; Docker publishes ports on an address of the engine's host, e.g. \"127.0.0.1\", \"10.0.0.5\" or \"0.0.0.0\" (all of them).", d.show(&dk.Bind, dk.Bind)))
			dk.Bind = ""
			return
		}
	}
	if !tcp || bad {
		return
	}
	engine := dk.TCPHost()
	if dk.Bind == "" {
		if _, ok := config.ParseIP(engine); ok {
			dk.Bind = engine // publish where the engine is reached
			return
		}
		d.errorAt(hostRange, "Missing bind",
			fmt.Sprintf("The engine at %s publishes the nodes' ports on its own host, and pgha connects to them there; from a host name pgha cannot tell which of that host's addresses to publish on. "+
				"Write bind = the IP address of that host pgha reaches, or bind = \"0.0.0.0\" to publish on all of them and connect to %s.", d.show(&dk.Host, dk.Host), d.show(&dk.Host, engine)))
		return
	}
	if loopback(dk.Bind) && !loopback(engine) {
		d.errorAt(bindRange, "Node ports on another host's loopback",
			fmt.Sprintf("bind = %s publishes the nodes' ports on the loopback of the engine's host (%s), where pgha, running on this host, cannot reach them. "+
				"Write bind = the IP address of that host pgha reaches, or leave bind out for the engine's address.", d.show(&dk.Bind, dk.Bind), d.show(&dk.Host, engine)))
	}
}

// declared is "ca_file is" or "ca_file and key_file are".
func declared(names []string) string {
	if len(names) == 1 {
		return names[0] + " is"
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " are"
}
