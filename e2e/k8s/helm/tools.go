//go:build tools

// The program this module builds (helm.sh/helm/v4/cmd/helm), imported so that `go mod tidy` keeps
// its requirements.
package tools

import _ "helm.sh/helm/v4/pkg/cmd"
