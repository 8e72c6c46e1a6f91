// Command etcd is the etcd server, built from the same module graph as the
// Kubernetes control plane so the test environment needs no prebuilt binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
