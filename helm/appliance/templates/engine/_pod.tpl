{{/*
The engine pod template, shared by the Deployment and both LeaderWorkerSet templates.
appliance.engine.podTemplate (dict "root" $ "role" "leader"|"worker" "spec" .Values.engine.leader)
*/}}
{{- define "appliance.engine.podTemplate" -}}
{{- $root := .root -}}
{{- $e := $root.Values.engine -}}
{{- $leader := eq .role "leader" -}}
metadata:
  labels:
    {{- include "appliance.labels" (dict "root" $root "component" "engine") | nindent 4 }}
    appliance/engine-role: {{ .role }}
spec:
  {{- include "appliance.imagePullSecrets" $root | nindent 2 }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $e.terminationGracePeriodSeconds }}
  {{- with $e.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- include "appliance.podSecurityContext" (dict "runAsUser" $e.runAsUser) | nindent 4 }}
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
        {{- range $k, $v := $e.nccl.extraEnv }}{{ $_ := set $env $k (toString $v) }}{{ end -}}
        {{- range $k, $v := (.spec.env | default dict) }}{{ $_ := set $env $k (toString $v) }}{{ end -}}
        {{- /* No egress, no telemetry: always, whatever the values say. */ -}}
        {{- $_ := set $env "HF_HUB_OFFLINE" "1" -}}
        {{- $_ := set $env "HF_DATASETS_OFFLINE" "1" -}}
        {{- $_ := set $env "TRANSFORMERS_OFFLINE" "1" -}}
        {{- $_ := set $env "VLLM_NO_USAGE_STATS" "1" -}}
        {{- $_ := set $env "DO_NOT_TRACK" "1" -}}
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
        {{- if $multinode }}{{ $_ := unset $env "VLLM_HOST_IP" }}{{ end -}}
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
        {{- range $k, $v := $limits }}{{ if hasSuffix "/gpu" $k }}{{ $_ := set $requests $k $v }}{{ end }}{{ end -}}
        {{- $_ := set $res "limits" $limits -}}
        {{- $_ := set $res "requests" $requests -}}
        {{- toYaml $res | nindent 8 }}
      securityContext:
        {{- include "appliance.containerSecurityContext" (dict "runAsUser" $e.runAsUser "readOnlyRootFilesystem" $e.readOnlyRootFilesystem "add" $e.capabilitiesAdd) | nindent 8 }}
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
