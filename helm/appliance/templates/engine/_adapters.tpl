{{/*
Per-team LoRA adapters (engine.adapters, docs/adapters.md "On a deployed site").

The adapter store is the model store's adapters/ directory (`appliance adapters import`
on the staging host writes <store>/adapters/<model directory>/<name>/). It is mounted
read-only at the same path in the engine pods and the gateway pods, so that the paths
in --lora-modules, the gateway's runtime loads (/v1/load_lora_adapter) and the
gateway's catalogue all name the same files.
*/}}

{{/* Where the adapter store is mounted (the gateway's <data_dir>/models/adapters). */}}
{{- define "appliance.adapters.dir" -}}/var/lib/appliance/models/adapters{{- end -}}

{{/* The engine model's directory name in the store: the adapters' base. */}}
{{- define "appliance.adapters.storeName" -}}{{ base .Values.engine.model.path }}{{- end -}}

{{/* vLLM's LoRA ranks: --max-lora-rank must be one of them (appliance.engine.launch.VLLM_LORA_RANKS). */}}
{{- define "appliance.adapters.maxRank" -}}
{{- $rank := int .Values.engine.adapters.maxLoraRank -}}
{{- range .Values.engine.adapters.modules }}{{ if gt (int .rank) $rank }}{{ $rank = int .rank }}{{ end }}{{ end -}}
{{- $rank -}}
{{- end -}}

{{- define "appliance.adapters.rankLimit" -}}
{{- $rank := int (include "appliance.adapters.maxRank" .) -}}
{{- $limit := 0 -}}
{{- range list 1 8 16 32 64 128 256 320 512 }}{{ if and (eq $limit 0) (ge . $rank) }}{{ $limit = . }}{{ end }}{{ end -}}
{{- $limit -}}
{{- end -}}

{{/* The engine's LoRA flags as a YAML list (appliance.engine.launch.LoraServing.args):
every node of the engine gets the same. Empty without engine.adapters.enabled. */}}
{{- define "appliance.adapters.engineArgs" -}}
{{- $a := .Values.engine.adapters -}}
{{- $out := list -}}
{{- if $a.enabled -}}
{{- $served := .Values.engine.model.servedModelName -}}
{{- $loras := int $a.maxLoras -}}
{{- if eq $loras 0 }}{{ $loras = max 1 (min (len $a.modules) 4) }}{{ end -}}
{{- $out = list "--enable-lora" "--max-loras" (toString $loras) "--max-lora-rank" (include "appliance.adapters.rankLimit" .) -}}
{{- if $a.modules -}}
{{- $out = append $out "--lora-modules" -}}
{{- $dir := printf "%s/%s" (include "appliance.adapters.dir" .) (include "appliance.adapters.storeName" .) -}}
{{- range $a.modules -}}
{{- $spec := dict "name" (printf "%s:%s" $served .name) "path" (printf "%s/%s" $dir .name) "base_model_name" $served -}}
{{- $out = append $out (toJson $spec) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The adapter volume's source: its own claim or host path, else the weights volume
(with subPath engine.adapters.subPath). */}}
{{- define "appliance.adapters.volume" -}}
{{- $a := .Values.engine.adapters -}}
{{- $w := .Values.engine.weights -}}
- name: adapters
  {{- if $a.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $a.existingClaim }}
    readOnly: true
  {{- else if $a.hostPath }}
  hostPath:
    path: {{ $a.hostPath }}
    type: Directory
  {{- else if $w.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $w.existingClaim }}
    readOnly: true
  {{- else }}
  hostPath:
    path: {{ $w.hostPath | default "/srv/appliance/models" }}
    type: Directory
  {{- end }}
{{- end -}}

{{/* "true" when the adapter store has a volume of its own (not the weights volume). */}}
{{- define "appliance.adapters.ownVolume" -}}
{{- with .Values.engine.adapters }}{{ if or .existingClaim .hostPath }}true{{ end }}{{ end -}}
{{- end -}}

{{/* The read-only mount of the adapter store: appliance.adapters.volumeMount (dict "root" $
"volume" name). Engine pods mount their weights volume at subPath (one claim, mounted
once); gateway pods and an own volume use the "adapters" volume. */}}
{{- define "appliance.adapters.volumeMount" -}}
{{- $a := .root.Values.engine.adapters -}}
- name: {{ .volume }}
  mountPath: {{ include "appliance.adapters.dir" .root }}
  {{- if not (or $a.existingClaim $a.hostPath) }}
  subPath: {{ $a.subPath }}
  {{- end }}
  readOnly: true
{{- end -}}

{{/* An init container of every engine pod: each adapter of engine.adapters.modules
against its MANIFEST.sha256 and that manifest against the sha256 the values pin
(`appliance adapters verify --expect-sha256`, with the gateway image). A changed weight,
team list or re-import stops the engine before it serves anything. */}}
{{- define "appliance.adapters.verifyContainer" -}}
{{- $root := . -}}
{{- $g := .Values.gateway -}}
- name: verify-adapters
  image: {{ include "appliance.image" (dict "image" $g.image "global" .Values.global) }}
  imagePullPolicy: {{ $g.image.pullPolicy }}
  command: ["/bin/sh", "-ec"]
  args:
    - |
      {{- range .Values.engine.adapters.modules }}
      appliance adapters verify {{ .name | squote }} --base {{ include "appliance.adapters.storeName" $root | squote }} --expect-sha256 {{ .manifestSha256 | squote }}
      {{- end }}
  env:
    - name: APPLIANCE_DATA_DIR
      value: /var/lib/appliance
  resources:
    requests: {cpu: 100m, memory: 128Mi}
    limits: {memory: 512Mi}
  securityContext:
    {{- include "appliance.containerSecurityContext" (dict "runAsUser" $g.runAsUser "readOnlyRootFilesystem" true) | nindent 4 }}
  volumeMounts:
    {{- include "appliance.adapters.volumeMount" (dict "root" . "volume" (ternary "adapters" "weights" (eq (include "appliance.adapters.ownVolume" .) "true"))) | nindent 4 }}
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* Refusals for engine.adapters (appliance.validateValues). */}}
{{- define "appliance.adapters.messages" -}}
{{- $messages := list -}}
{{- $a := .Values.engine.adapters -}}
{{- if $a.enabled -}}
{{- if and (not $a.modules) (eq (int $a.maxLoraRank) 0) -}}
{{- $messages = append $messages "engine.adapters: list the adapters in modules ([{name, rank, manifestSha256}], from `appliance adapters list`), or set maxLoraRank for adapters loaded at runtime only" -}}
{{- end -}}
{{- if and $a.existingClaim $a.hostPath -}}
{{- $messages = append $messages "engine.adapters: set only one of existingClaim and hostPath" -}}
{{- end -}}
{{- range $a.modules -}}
{{- if not (regexMatch "^[0-9a-f]{64}$" (toString .manifestSha256)) -}}
{{- $messages = append $messages (printf "engine.adapters.modules: %s needs manifestSha256, the 64 hex digits `appliance adapters verify` prints" (toString .name)) -}}
{{- end -}}
{{- end -}}
{{- if gt (int (include "appliance.adapters.maxRank" .)) 512 -}}
{{- $messages = append $messages "engine.adapters: a rank above 512, the largest vLLM serves" -}}
{{- end -}}
{{- else if $a.runtimeUpdates -}}
{{- $messages = append $messages "engine.adapters.runtimeUpdates: only with engine.adapters.enabled (an engine without LoRA has no adapter slots)" -}}
{{- end -}}
{{- toYaml $messages -}}
{{- end -}}
