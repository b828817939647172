{{/*
The embedding engine (embeddingEngine): a second vLLM engine, served by vLLM's pooling
runner (/v1/embeddings), beside the chat engine. The gateway learns it as an upstream of
kind embedding (_config.tpl). Same image, CLI, weights volume, shared secret, TLS and
security context as a one-node chat engine.
*/}}

{{- define "appliance.embeddingEngine.fullname" -}}{{ include "appliance.componentname" (dict "root" . "component" "embedding-engine") }}{{- end -}}

{{- define "appliance.embeddingEngine.url" -}}
{{- printf "%s://%s:%d" (ternary "https" "http" (not (empty .Values.engine.tls.existingSecret))) (include "appliance.embeddingEngine.fullname" .) (int .Values.embeddingEngine.service.port) -}}
{{- end -}}

{{/* vllm serve's argv for the embedding engine (appliance.engine.launch.LaunchSpec with
Pooling): the pooling runner, the conversion and the pooler stated, not left to vLLM's
defaults, so a reference computation can follow them. */}}
{{- define "appliance.embeddingEngine.args" -}}
{{- $m := .Values.embeddingEngine -}}
{{- $dtype := $m.dtype | default (ternary "float32" "auto" (eq $m.device "cpu")) -}}
{{- $out := list "--served-model-name" $m.model.servedModelName "--max-model-len" (toString $m.maxModelLen) "--dtype" $dtype -}}
{{- if eq $m.device "gpu" }}{{ $out = concat $out (list "--gpu-memory-utilization" (toString $m.gpuMemoryUtilization)) }}{{ end -}}
{{- $out = concat $out (list "--runner" "pooling") -}}
{{- if ne $m.convert "none" }}{{ $out = concat $out (list "--convert" $m.convert) }}{{ end -}}
{{- $pooler := dict "use_activation" $m.normalize -}}
{{- with $m.pooling }}{{ $_ := set $pooler "pooling_type" . }}{{ end -}}
{{- $out = concat $out (list "--pooler-config" (toJson $pooler)) -}}
{{- $out = concat $out (list "--host" "0.0.0.0" "--port" (toString .Values.engine.containerPort)) -}}
{{- if .Values.engine.tls.existingSecret -}}
{{- $dir := "/var/run/appliance/engine-tls" -}}
{{- $out = concat $out (list "--ssl-keyfile" (printf "%s/tls.key" $dir) "--ssl-certfile" (printf "%s/tls.crt" $dir) "--ssl-ca-certs" (printf "%s/ca.crt" $dir) "--ssl-cert-reqs" "2") -}}
{{- end -}}
{{- $out = concat $out ($m.extraArgs | default list) -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Refusals for embeddingEngine (appliance.validateValues). */}}
{{- define "appliance.embeddingEngine.messages" -}}
{{- $messages := list -}}
{{- $m := .Values.embeddingEngine -}}
{{- if $m.enabled -}}
{{- if eq $m.model.servedModelName .Values.engine.model.servedModelName -}}
{{- $messages = append $messages (printf "embeddingEngine.model.servedModelName: %s is the chat engine's name (engine.model.servedModelName); the gateway routes by model name" $m.model.servedModelName) -}}
{{- end -}}
{{- if not (hasPrefix (printf "%s/" (trimSuffix "/" .Values.engine.weights.mountPath)) $m.model.path) -}}
{{- $messages = append $messages (printf "embeddingEngine.model.path: %s is not under engine.weights.mountPath (%s), the volume it loads from" $m.model.path .Values.engine.weights.mountPath) -}}
{{- end -}}
{{- end -}}
{{- toYaml $messages -}}
{{- end -}}
