{{/*
The engine pod template, shared by the Deployment and both LeaderWorkerSet templates.
appliance.engine.podTemplate (dict "root" $ "role" "leader"|"worker" "spec" .Values.engine.leader)
*/}}
{{- define "appliance.engine.podTemplate" -}}
{{- $root := .root -}}
{{- $e := $root.Values.engine -}}
{{- $leader := eq .role "leader" -}}
{{- $rootUser := include "appliance.engine.runsAsRoot" $root -}}
metadata:
  labels:
    {{- include "appliance.labels" (dict "root" $root "component" "engine") | nindent 4 }}
    appliance/engine-role: {{ .role }}
  {{- with $e.rdma.networks }}
  annotations:
    # Multus: the secondary networks (RDMA fabric, private NCCL network) of this pod.
    k8s.v1.cni.cncf.io/networks: {{ toJson . | quote }}
  {{- end }}
spec:
  {{- include "appliance.imagePullSecrets" $root | nindent 2 }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $e.terminationGracePeriodSeconds }}
  {{- with $e.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $e.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- with $e.schedulerName }}
  schedulerName: {{ . }}
  {{- end }}
  securityContext:
    {{- if $rootUser }}
    # engine.rdma.runAsRoot: DeepEP's capabilities take effect only for UID 0 (docs/helm.md).
    runAsNonRoot: false
    runAsUser: 0
    runAsGroup: 0
    seccompProfile:
      type: RuntimeDefault
    {{- else }}
    {{- include "appliance.podSecurityContext" (dict "runAsUser" $e.runAsUser) | nindent 4 }}
    {{- end }}
  {{- with $e.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $e.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $e.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if and $e.adapters.enabled $e.adapters.modules }}
  initContainers:
    {{- include "appliance.adapters.verifyContainer" $root | nindent 4 }}
  {{- end }}
  containers:
    - name: vllm
      image: {{ include "appliance.image" (dict "image" $e.image "global" $root.Values.global) }}
      imagePullPolicy: {{ $e.image.pullPolicy }}
      command: ["/bin/sh", "-ec"]
      args:
        - |
          {{- include "appliance.engine.script" (dict "root" $root "args" .spec.args "leader" $leader) | nindent 10 }}
      env:
        {{- $env := dict -}}
        {{- range $k, $v := $e.extraEnv }}{{ $_ := set $env $k (toString $v) }}{{ end -}}
        {{- with $e.nccl.socketIfname }}{{ $_ := set $env "NCCL_SOCKET_IFNAME" . }}{{ $_ := set $env "GLOO_SOCKET_IFNAME" . }}{{ end -}}
        {{- with $e.nccl.ibHca }}{{ $_ := set $env "NCCL_IB_HCA" . }}{{ end -}}
        {{- with $e.nccl.ibGidIndex }}{{ $_ := set $env "NCCL_IB_GID_INDEX" (toString .) }}{{ end -}}
        {{- with $e.nccl.debug }}{{ $_ := set $env "NCCL_DEBUG" . }}{{ end -}}
        {{- if $e.rdma.enabled -}}
        {{- with $e.rdma.nvshmem -}}
        {{- if .ibgda }}{{ $_ := set $env "NVSHMEM_IB_ENABLE_IBGDA" "1" }}{{ end -}}
        {{- with .remoteTransport }}{{ $_ := set $env "NVSHMEM_REMOTE_TRANSPORT" . }}{{ end -}}
        {{- with .hcaPrefix }}{{ $_ := set $env "NVSHMEM_HCA_PREFIX" . }}{{ end -}}
        {{- with (.bootstrapIfname | default $e.nccl.socketIfname) }}{{ $_ := set $env "NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME" . }}{{ end -}}
        {{- end -}}
        {{- end -}}
        {{- range $k, $v := $e.nccl.extraEnv }}{{ $_ := set $env $k (toString $v) }}{{ end -}}
        {{- range $k, $v := (.spec.env | default dict) }}{{ $_ := set $env $k (toString $v) }}{{ end -}}
        {{- /* No egress, no telemetry: always, whatever the values say. */ -}}
        {{- $_ := set $env "HF_HUB_OFFLINE" "1" -}}
        {{- $_ := set $env "HF_DATASETS_OFFLINE" "1" -}}
        {{- $_ := set $env "TRANSFORMERS_OFFLINE" "1" -}}
        {{- $_ := set $env "VLLM_NO_USAGE_STATS" "1" -}}
        {{- $_ := set $env "DO_NOT_TRACK" "1" -}}
        {{- /* Runtime adapter loads (/v1/load_lora_adapter, the admin page): opt-in. */ -}}
        {{- if and $e.adapters.enabled $e.adapters.runtimeUpdates }}{{ $_ := set $env "VLLM_ALLOW_RUNTIME_LORA_UPDATING" "True" }}{{ else }}{{ $_ := unset $env "VLLM_ALLOW_RUNTIME_LORA_UPDATING" }}{{ end -}}
        {{- /* The engine runs as a UID the image has no passwd entry for: getpass.getuser()
        (vLLM, torch inductor) reads these before it asks getpwuid(), which would raise. */ -}}
        {{- $_ := set $env "USER" "vllm" -}}
        {{- $_ := set $env "LOGNAME" "vllm" -}}
        {{- $_ := set $env "HOME" "/var/cache/vllm" -}}
        {{- $_ := set $env "XDG_CACHE_HOME" "/var/cache/vllm" -}}
        {{- /* Compiled graphs and kernels: the compile-cache volume, or the scratch cache. */ -}}
        {{- $compile := include "appliance.engine.compileCacheDir" $root -}}
        {{- $_ := set $env "VLLM_CACHE_ROOT" $compile -}}
        {{- $_ := set $env "TORCHINDUCTOR_CACHE_DIR" (printf "%s/inductor" $compile) -}}
        {{- $_ := set $env "TRITON_CACHE_DIR" (printf "%s/triton" $compile) -}}
        {{- $_ := set $env "CUDA_CACHE_PATH" (printf "%s/cuda" $compile) -}}
        {{- $_ := set $env "FLASHINFER_WORKSPACE_BASE" $compile -}}
        {{- $multinode := include "appliance.engine.multinode" $root -}}
        {{- /* One node: all ranks talk over loopback. Unset, vLLM finds its address by
               routing a UDP socket towards 8.8.8.8 (no packet, but a connect() to an
               outside address that an egress audit flags). */ -}}
        {{- if $multinode }}{{ $_ := unset $env "VLLM_HOST_IP" }}{{ else if not (hasKey $env "VLLM_HOST_IP") }}{{ $_ := set $env "VLLM_HOST_IP" "127.0.0.1" }}{{ end -}}
        {{- range $k := keys $env | sortAlpha }}
        - name: {{ $k }}
          value: {{ get $env $k | quote }}
        {{- end }}
        {{- if $multinode }}
        # The address other nodes reach this pod on (torch.distributed, DP RPC).
        - name: VLLM_HOST_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        {{- end }}
        - name: VLLM_API_KEY
          valueFrom:
            secretKeyRef:
              name: {{ include "appliance.secretName" $root }}
              key: {{ $root.Values.secrets.keys.engineApiKey }}
      ports:
        {{- if $leader }}
        - name: http
          containerPort: {{ $e.containerPort }}
          protocol: TCP
        {{- end }}
        {{- if include "appliance.engine.multinode" $root }}
        - name: dist
          containerPort: {{ $e.masterPort }}
          protocol: TCP
        - name: dp-rpc
          containerPort: {{ $e.dataParallelRpcPort }}
          protocol: TCP
        {{- end }}
      {{- if $leader }}
      startupProbe:
        {{- include "appliance.engine.probe" (dict "root" $root "timeout" 4) | nindent 8 }}
        periodSeconds: {{ $e.startupProbe.periodSeconds }}
        failureThreshold: {{ $e.startupProbe.failureThreshold }}
        timeoutSeconds: 5
      readinessProbe:
        # /health, not /v1/models: VLLM_API_KEY guards every /v1 route.
        {{- include "appliance.engine.probe" (dict "root" $root "timeout" 4) | nindent 8 }}
        periodSeconds: {{ $e.readinessProbe.periodSeconds }}
        failureThreshold: {{ $e.readinessProbe.failureThreshold }}
        timeoutSeconds: 5
      livenessProbe:
        {{- include "appliance.engine.probe" (dict "root" $root "timeout" 9) | nindent 8 }}
        periodSeconds: {{ $e.livenessProbe.periodSeconds }}
        failureThreshold: {{ $e.livenessProbe.failureThreshold }}
        timeoutSeconds: 10
      {{- end }}
      resources:
        {{- $res := deepCopy ($e.resources | default dict) -}}
        {{- $limits := $res.limits | default dict -}}
        {{- $requests := $res.requests | default dict -}}
        {{- if $e.rdma.enabled }}{{ $_ := set $limits $e.rdma.resourceName (int $e.rdma.count) }}{{ end -}}
        {{- range $k, $v := $limits }}{{ if or (hasSuffix "/gpu" $k) (and $e.rdma.enabled (eq $k $e.rdma.resourceName)) }}{{ $_ := set $requests $k $v }}{{ end }}{{ end -}}
        {{- $_ := set $res "limits" $limits -}}
        {{- $_ := set $res "requests" $requests -}}
        {{- toYaml $res | nindent 8 }}
      securityContext:
        {{- if $rootUser }}
        runAsNonRoot: false
        runAsUser: 0
        runAsGroup: 0
        allowPrivilegeEscalation: false
        privileged: false
        readOnlyRootFilesystem: {{ $e.readOnlyRootFilesystem }}
        capabilities:
          drop: ["ALL"]
          {{- with concat ($e.rdma.capabilities | default list) ($e.capabilitiesAdd | default list) | uniq }}
          add: {{ toJson . }}
          {{- end }}
        seccompProfile:
          type: RuntimeDefault
        {{- else }}
        {{- include "appliance.containerSecurityContext" (dict "runAsUser" $e.runAsUser "readOnlyRootFilesystem" $e.readOnlyRootFilesystem "add" $e.capabilitiesAdd) | nindent 8 }}
        {{- end }}
      volumeMounts:
        - name: weights
          mountPath: {{ $e.weights.mountPath }}
          readOnly: true
        - name: dshm
          mountPath: /dev/shm
        - name: cache
          mountPath: /var/cache/vllm
        - name: tmp
          mountPath: /tmp
        {{- if $e.adapters.enabled }}
        {{- include "appliance.adapters.volumeMount" (dict "root" $root "volume" (ternary "adapters" "weights" (eq (include "appliance.adapters.ownVolume" $root) "true"))) | nindent 8 }}
        {{- end }}
        {{- if $e.chatTemplates }}
        - name: chat-templates
          mountPath: {{ include "appliance.engine.chatTemplateDir" $root }}
          readOnly: true
        {{- end }}
        {{- if $e.compileCache.enabled }}
        - name: compile-cache
          mountPath: {{ include "appliance.engine.compileCacheDir" $root }}
        {{- end }}
        {{- if and $leader $e.tls.existingSecret }}
        - name: engine-tls
          mountPath: /var/run/appliance/engine-tls
          readOnly: true
        {{- end }}
  volumes:
    - name: weights
      {{- if $e.weights.existingClaim }}
      persistentVolumeClaim:
        claimName: {{ $e.weights.existingClaim }}
        readOnly: true
      {{- else }}
      hostPath:
        path: {{ $e.weights.hostPath | default "/srv/appliance/models" }}
        type: Directory
      {{- end }}
    {{- if and $e.adapters.enabled (include "appliance.adapters.ownVolume" $root) }}
    {{- include "appliance.adapters.volume" $root | nindent 4 }}
    {{- end }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $e.shmSize }}
    - name: cache
      emptyDir:
        sizeLimit: {{ $e.cache.sizeLimit }}
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    {{- if $e.chatTemplates }}
    - name: chat-templates
      configMap:
        # Named after its content (chat-template-configmap.yaml): new templates roll the pods.
        name: {{ include "appliance.engine.chatTemplates.fullname" $root }}
        defaultMode: 0444
    {{- end }}
    {{- with $e.compileCache }}
    {{- if .enabled }}
    - name: compile-cache
      {{- if .existingClaim }}
      persistentVolumeClaim:
        claimName: {{ .existingClaim }}
      {{- else if .hostPath }}
      hostPath:
        path: {{ .hostPath }}
        type: Directory
      {{- else }}
      emptyDir:
        sizeLimit: {{ .sizeLimit }}
      {{- end }}
    {{- end }}
    {{- end }}
    {{- if and $leader $e.tls.existingSecret }}
    - name: engine-tls
      secret:
        secretName: {{ $e.tls.existingSecret }}
        defaultMode: 0440
        items:
          - { key: tls.crt, path: tls.crt }
          - { key: tls.key, path: tls.key }
          - { key: ca.crt, path: ca.crt }
    {{- end }}
{{- end -}}


{{/* "true" when the engine runs as UID 0: engine.rdma.runAsRoot, with the fabric enabled
(validateValues refuses runAsRoot alone). */}}
{{- define "appliance.engine.runsAsRoot" -}}
{{- with .Values.engine.rdma }}{{ if and .enabled .runAsRoot }}true{{ end }}{{ end -}}
{{- end -}}

{{/* The interfaces Multus adds to an engine pod, one per line: each network's
`interface`, else Multus's default name (net1, net2 ... in order). */}}
{{- define "appliance.engine.networkInterfaces" -}}
{{- range $i, $n := .Values.engine.rdma.networks }}
{{ $n.interface | default (printf "net%d" (add1 $i)) }}
{{- end -}}
{{- end -}}
