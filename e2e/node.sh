# A real node for the local control plane (`e2e/cluster up --node`), sourced by e2e/cluster.
#
# Layout (nothing leaves this machine, nothing of the host's network is changed but one route):
# - a network namespace $NODE_NETNS, joined to the host by a veth pair: host $NODE_HOST_IP,
#   node $NODE_IP. The API server listens on $NODE_HOST_IP (also a local address of this machine).
# - in it: containerd (private root, state and socket; runc; pods on a CNI bridge with the subnet
#   $POD_CIDR) and the kubelet, registered as Node $NODE_NAME. The host routes $POD_CIDR to the
#   node, so the API server reaches webhooks in pods and the tests reach pods.
# - a DNAT rule inside the namespace makes the `kubernetes` Service (10.0.0.1:443) the API server:
#   pods use the in-cluster configuration as on any cluster. kube-proxy, in the namespace too,
#   routes every other Service's cluster IP to its endpoints (there is no cluster DNS).
# - images come from local builds (buildah, no registry): the pod sandbox ("pause", a static C
#   program), the operator and the reference agent (release builds of this workspace), imported
#   into containerd's k8s.io namespace.
#
# Two checkouts may run a node each on one machine: every machine-wide name (the namespace, the
# host link, the subnets) is derived from this checkout's state directory, chosen free at `up`, and
# written to $STATE/node/net; `down` removes only what that file names.

NODE_NAME=warden-node
PAUSE_IMAGE=localhost/soc-warden/pause:1.0
OPERATOR_IMAGE=localhost/soc-warden/warden:0.1.0
AGENT_IMAGE=localhost/soc-warden/reference-agent:0.1.0
# The chart's audit Service's node port (e2e/node-values.yaml): the API server's audit webhook.
AUDIT_NODE_PORT=30443
NODE_PACKAGES=(containerd runc containernetworking-plugins buildah iptables iproute2 gcc libc6-dev conntrack)

# The machine-wide names of this checkout's node. A slot (0-63) is derived from the state
# directory's path; when another node holds it (its namespace or subnet exists), the next free one
# is taken. Slot k: namespace swn-<k>, host link swh-<k>, node link swn-<k> (inside the namespace),
# host/node addresses 172.30.<4k>.1/.2, pods 172.31.<4k>.0/24.
node_names() { # slot
  local k=$1
  NODE_SLOT=$k
  NODE_NETNS=soc-warden-node-$k
  NODE_HOST_IF=swh-$k
  NODE_IF=swn-$k
  NODE_HOST_IP=172.30.$((4 * k)).1
  NODE_IP=172.30.$((4 * k)).2
  POD_CIDR=172.31.$((4 * k)).0/24
}

slot_taken() { # slot
  node_names "$1"
  [ -e "/run/netns/$NODE_NETNS" ] || ip link show "$NODE_HOST_IF" >/dev/null 2>&1 ||
    ip route show | grep -qE "^(${POD_CIDR%/*}|172\.30\.$((4 * $1))\.0)[/ ]" ||
    ip addr show | grep -qF "inet $NODE_HOST_IP/"
}

# Chooses this node's slot (at `up`) and records it; `load_node_names` reads it back.
choose_node_names() {
  local start k i
  start=$(( $(printf '%s' "$STATE" | cksum | cut -d' ' -f1) % 64 ))
  for i in $(seq 0 63); do
    k=$(( (start + i) % 64 ))
    if ! slot_taken "$k"; then
      node_names "$k"
      mkdir -p "$STATE/node"
      printf 'NODE_SLOT=%s\n' "$k" >"$STATE/node/net"
      return 0
    fi
  done
  die "no free node slot (64 nodes on this machine?)"
}

load_node_names() {
  [ -f "$STATE/node/net" ] || return 1
  # shellcheck disable=SC1091
  . "$STATE/node/net"
  node_names "$NODE_SLOT"
}

node_packages() { ensure_packages "${NODE_PACKAGES[@]}"; }

ctr_() { ctr --address "$STATE/node/containerd.sock" -n k8s.io "$@"; }

# The network namespace, the veth pair, the route to the pods and the `kubernetes` Service's DNAT.
node_network() {
  choose_node_names
  ip netns add "$NODE_NETNS"
  ip link add "$NODE_HOST_IF" type veth peer name "$NODE_IF"
  ip link set "$NODE_IF" netns "$NODE_NETNS"
  ip addr add "$NODE_HOST_IP/30" dev "$NODE_HOST_IF"
  ip link set "$NODE_HOST_IF" up
  ip route add "$POD_CIDR" via "$NODE_IP" dev "$NODE_HOST_IF"
  local in=(ip netns exec "$NODE_NETNS")
  "${in[@]}" ip addr add "$NODE_IP/30" dev "$NODE_IF"
  "${in[@]}" ip link set "$NODE_IF" up
  "${in[@]}" ip link set lo up
  "${in[@]}" ip route add default via "$NODE_HOST_IP"
  "${in[@]}" sysctl -qw net.ipv4.ip_forward=1
}

# After the API server's port is known: 10.0.0.1:443 (the `kubernetes` Service) -> the API server.
node_service_nat() {
  ip netns exec "$NODE_NETNS" iptables -t nat -A PREROUTING -d 10.0.0.1/32 -p tcp --dport 443 \
    -j DNAT --to-destination "$NODE_HOST_IP:$API_PORT"
  ip netns exec "$NODE_NETNS" iptables -t nat -A OUTPUT -d 10.0.0.1/32 -p tcp --dport 443 \
    -j DNAT --to-destination "$NODE_HOST_IP:$API_PORT"
}

node_pki() {
  local p=$STATE/pki
  # The API server's client certificate towards the kubelet (logs, exec, port-forward).
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$p/kubelet-client.key" -out "$p/kubelet-client.csr" 2>/dev/null
  openssl x509 -req -in "$p/kubelet-client.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 30 -extfile "$p/client.ext" -out "$p/kubelet-client.crt" 2>/dev/null
}

# The kubelet's identity: a static token for system:node:<name> in system:nodes (Node authorizer).
node_token() {
  local t
  t=$(openssl rand -hex 24)
  printf '%s,%s,%s,"%s"\n' "$t" "system:node:$NODE_NAME" "uid-$NODE_NAME" system:nodes >>"$STATE/tokens.csv"
  kubeconfig node "$t"
}

# Images without a registry: build a root filesystem, commit, push as a docker-archive, import.
image() { # name, then a function that fills the mounted root "$1"
  local name=$1 fill=$2 b root
  local bah=(buildah --root "$STATE/node/buildah" --runroot "$STATE/node/buildah-run" --storage-driver vfs)
  b=$("${bah[@]}" from scratch)
  root=$("${bah[@]}" mount "$b")
  "$fill" "$root"
  "${bah[@]}" config "${IMAGE_CONFIG[@]}" "$b"
  "${bah[@]}" commit -q "$b" "$name" >/dev/null
  "${bah[@]}" push -q "$name" "docker-archive:$STATE/node/image.tar:$name" >/dev/null
  "${bah[@]}" rm "$b" >/dev/null
  ctr_ images import "$STATE/node/image.tar" >/dev/null
  rm -f "$STATE/node/image.tar"
  log "image $name imported"
}

# A binary and the shared libraries it links, as the Dockerfile's final stage copies them.
with_libs() { # root binary dest
  local root=$1 bin=$2 dest=$3 lib
  mkdir -p "$root/$(dirname "$dest")"
  cp "$bin" "$root/$dest"
  for lib in $(ldd "$bin" | grep -oE '/[^ ]+'); do
    mkdir -p "$root/$(dirname "$lib")"
    cp -L "$lib" "$root/$lib"
  done
  mkdir -p "$root/etc/ssl/certs" "$root/tmp"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'nonroot:x:65532:65532::/:/sbin/nologin\n' >"$root/etc/passwd"
}

fill_pause() { mkdir -p "$1/bin"; cp "$STATE/node/pause" "$1/bin/pause"; }
fill_operator() { with_libs "$1" "$RELEASE/warden" /usr/local/bin/warden; }
fill_agent() { with_libs "$1" "$RELEASE/reference-agent" /usr/local/bin/reference-agent; }

# SOC_WARDEN_NODE_IMAGES=pause: the sandbox image only (a second node beside the first, for the
# test that two run side by side, needs no operator image).
node_images() {
  # The pod sandbox: waits for a signal, as Kubernetes' own pause does.
  gcc -static -Os -o "$STATE/node/pause" "$HERE/images/pause.c"
  IMAGE_CONFIG=(--entrypoint '["/bin/pause"]' --user 65535:65535)
  image "$PAUSE_IMAGE" fill_pause
  [ "${SOC_WARDEN_NODE_IMAGES:-all}" = pause ] && return 0
  RELEASE=$HERE/../target/release
  log "building the release binaries of the operator and the reference agent"
  (cd "$HERE/.." && cargo build -q --release --locked -p soc-warden -p reference-agent --bin warden --bin reference-agent >&2)
  IMAGE_CONFIG=(--entrypoint '["/usr/local/bin/warden"]' --user 65532:65532)
  image "$OPERATOR_IMAGE" fill_operator
  IMAGE_CONFIG=(--entrypoint '["/usr/local/bin/reference-agent"]' --user 65532:65532)
  image "$AGENT_IMAGE" fill_agent
}

node_up() {
  node_packages
  build_node
  local n=$STATE/node
  mkdir -p "$n/cni" "$n/kubelet" "$n/containerd"
  # The kubelet writes container logs under /var/log/pods and /var/log/containers (fixed paths):
  # remember what was there, so that `down` removes only what this node wrote.
  ls -A /var/log/pods /var/log/containers 2>/dev/null >"$n/logs-before" || true
  cat >"$n/containerd.toml" <<EOF
version = 2
root = "$n/containerd/root"
state = "$n/containerd/state"
[grpc]
  address = "$n/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  netns_mounts_under_state_dir = true
  # This machine may not lower a process's oom_score_adj (the kubelet asks -998 for sandboxes).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$n/cni"
EOF
  cat >"$n/cni/10-warden.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "warden-pods", "plugins": [
  {"type": "bridge", "bridge": "swn-br0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$n/cni-ipam"}}]}
EOF
  nsenter --net="/run/netns/$NODE_NETNS" containerd --config "$n/containerd.toml" >"$STATE/logs/containerd.log" 2>&1 &
  node_pid containerd $!
  wait_for 30 containerd ctr_ version || die "containerd did not start (see $STATE/logs/containerd.log)"
  node_images

  "$NODE_BIN/kube-scheduler" --kubeconfig="$STATE/admin.kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$(free_port)" \
    >"$STATE/logs/kube-scheduler.log" 2>&1 &
  node_pid kube-scheduler $!

  # containerd and the kubelet enter only the node's network namespace (nsenter, so that $! is the
  # process itself): `ip netns exec` would also give each its own mount namespace with a fresh /sys
  # (no cgroups), and containerd would not see the kubelet's volume mounts.
  cat >"$n/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
cgroupDriver: cgroupfs
# This machine's cgroups are v1: 1.35 is the last kubelet that runs on them, and only when told to.
failCgroupV1: false
containerRuntimeEndpoint: unix://$n/containerd.sock
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# The images were imported, not pulled (no registry): never collect them, whatever else fills this
# machine's disk (the kubelet measures the whole filesystem, shared with everything else here).
imageGCHighThresholdPercent: 100
# Mounted Secrets follow their object within seconds (the default pod sync is a minute).
syncFrequency: 5s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
evictionHard: {memory.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
EOF
  nsenter --net="/run/netns/$NODE_NETNS" "$NODE_BIN/kubelet" --config="$n/kubelet.yaml" \
    --kubeconfig="$STATE/node.kubeconfig" --root-dir="$n/kubelet" \
    --cert-dir="$n/kubelet/pki" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
    --v=1 >"$STATE/logs/kubelet.log" 2>&1 &
  node_pid kubelet $!
  # Services for pods, as on any node: kube-proxy (iptables, in the node's namespace) sends a
  # Service's cluster IP to its endpoints (the chart's `helm test` pod reaches the operator's
  # Service). It masquerades every Service connection: client and endpoint may share the pods'
  # bridge, and the endpoint's reply must come back through the rule that translated the request.
  # Its ports are the namespace's own; it sets no machine-wide sysctl (conntrack left as it is).
  cat >"$n/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $STATE/admin.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
iptables: {masqueradeAll: true, localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: [primary]
EOF
  nsenter --net="/run/netns/$NODE_NETNS" "$NODE_BIN/kube-proxy" --config="$n/kube-proxy.yaml" \
    >"$STATE/logs/kube-proxy.log" 2>&1 &
  node_pid kube-proxy $!
  wait_for 120 "node $NODE_NAME" node_ready || die "the node did not become Ready (see $STATE/logs/kubelet.log)"
}

node_ready() {
  [ "$("$BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# A node process: in pids (so `running` sees it) and, by name, in node/pids (so `down` stops them in
# order).
node_pid() { # name pid
  echo "$2" >>"$STATE/pids"
  printf '%s %s\n' "$1" "$2" >>"$STATE/node/pids"
}

node_pid_of() { awk -v n="$1" '$1 == n {print $2}' "$STATE/node/pids" 2>/dev/null; }

stop_pid() { # pid: SIGTERM, then SIGKILL after 5 s
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 50); do alive "$1" || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}

# Stops the node before the control plane, in the order that leaves nothing behind: the kubelet
# first (or it restarts the containers), then every container and sandbox, then containerd (whose
# shims go with their tasks), then the scheduler. A container process that survives its task is
# killed by the pid containerd reported for it.
node_down() {
  [ -f "$STATE/node/pids" ] || return 0
  stop_pid "$(node_pid_of kubelet)"
  local t pids=""
  if [ -S "$STATE/node/containerd.sock" ]; then
    pids=$(ctr_ tasks ls 2>/dev/null | awk 'NR > 1 {print $2}')
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    for _ in $(seq 20); do
      [ -z "$(ctr_ tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING"')" ] && break
      sleep 0.1
    done
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop_pid "$(node_pid_of containerd)"
  stop_pid "$(node_pid_of kube-proxy)"
  stop_pid "$(node_pid_of kube-scheduler)"
  for t in $pids; do alive "$t" && kill -9 "$t" 2>/dev/null; done
  return 0
}

# After the processes stopped: shims, mounts, and this node's namespace and host link (named in
# node/net; another checkout's are never touched).
node_cleanup() {
  pkill -9 -f "containerd-shim.*$STATE/node/containerd.sock" 2>/dev/null || true
  if [ -d "$STATE/node" ]; then
    grep -F " $STATE/node/" /proc/self/mounts | awk '{print $2}' | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  if [ -f "$STATE/node/logs-before" ]; then
    local f
    for f in /var/log/pods/* /var/log/containers/*; do
      [ -e "$f" ] || [ -L "$f" ] || continue
      grep -qxF "$(basename "$f")" "$STATE/node/logs-before" || rm -rf "$f"
    done
  fi
  if load_node_names; then
    ip netns del "$NODE_NETNS" 2>/dev/null || true
    ip link del "$NODE_HOST_IF" 2>/dev/null || true
    ip route del "$POD_CIDR" 2>/dev/null || true
    rm -f "$STATE/node/net"
  fi
}
