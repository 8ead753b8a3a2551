{{/* Names, labels and the pieces shared by every workload of the chart. */}}

{{- define "grpo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; Kubernetes names are capped at 63 characters. */}}
{{- define "grpo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "grpo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "grpo.labels" -}}
helm.sh/chart: {{ include "grpo.chart" . }}
{{ include "grpo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "grpo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "grpo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "trainer"). */}}
{{- define "grpo.componentSelectorLabels" -}}
{{ include "grpo.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "grpo.componentLabels" -}}
{{ include "grpo.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "grpo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "grpo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The component's image: (dict "root" $ "image" .Values.trainer.image). A digest wins over a tag. */}}
{{- define "grpo.image" -}}
{{- $g := .root.Values.image }}
{{- $repo := default $g.repository .image.repository }}
{{- $digest := default $g.digest .image.digest }}
{{- if $digest }}
{{- printf "%s@%s" $repo $digest }}
{{- else }}
{{- printf "%s:%s" $repo (default (default .root.Chart.AppVersion $g.tag) .image.tag) }}
{{- end }}
{{- end }}

{{/* Whether the component's image is pinned by digest ("true" or ""). */}}
{{- define "grpo.imageHasDigest" -}}
{{- if (default .root.Values.image.digest .image.digest) }}true{{ end }}
{{- end }}

{{/*
checkov annotations for a workload. CKV_K8S_43 (image by digest) is skipped only while no digest
is configured: a chart cannot know the digest of an image built later; image.digest pins it.
Extra skips come as a list of "CHECK=justification" strings.
(dict "root" $ "image" .Values.trainer.image "skips" (list ...))
*/}}
{{- define "grpo.checkovAnnotations" -}}
{{- $skips := .skips | default list }}
{{- if not (include "grpo.imageHasDigest" .) }}
{{- $skips = append $skips "CKV_K8S_43=the image digest is not known to the chart; set image.digest (or <component>.image.digest) to pin it" }}
{{- end }}
{{- range $i, $s := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $s | quote }}
{{- end }}
{{- end }}

{{/* Resources with the GPU extended resource added to limits (and requests) when gpu.count > 0. */}}
{{- define "grpo.resources" -}}
{{- $res := deepCopy (.resources | default dict) }}
{{- if gt (int .gpu.count) 0 }}
{{- $limits := get $res "limits" | default dict }}
{{- $_ := set $limits .gpu.resourceName (int .gpu.count) }}
{{- $_ := set $res "limits" $limits }}
{{- $requests := get $res "requests" | default dict }}
{{- $_ := set $requests .gpu.resourceName (int .gpu.count) }}
{{- $_ := set $res "requests" $requests }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* gRPC health probes on the named port: (dict "port" 50051 "probe" .Values.trainer.startupProbe). */}}
{{- define "grpo.grpcProbe" -}}
grpc:
  port: {{ .port }}
{{- toYaml .probe | nindent 0 }}
{{- end }}

{{/*
The same health as plain HTTP on the metrics port, which stays HTTP with TLS on: GET /healthz answers 200
while the gRPC health is SERVING, 503 otherwise (grpo_server/metrics.py, grpo_rewards/common/metrics.py).
(dict "metricsPort" 9090 "probe" .Values.trainer.readinessProbe)
*/}}
{{- define "grpo.httpHealthProbe" -}}
httpGet:
  path: /healthz
  port: {{ .metricsPort }}
{{- toYaml .probe | nindent 0 }}
{{- end }}

{{/*
A reward service's probe: gRPC health on the port, or, with rewards.tls.enabled, the same health over
HTTP on the metrics port (kubelet's grpc probes speak no TLS): 503 until SERVING and from the start of a
drain. (dict "root" $ "port" 50051 "metricsPort" 9090 "probe" $r.readinessProbe)
*/}}
{{- define "grpo.rewardProbe" -}}
{{- if .root.Values.rewards.tls.enabled }}
{{- include "grpo.httpHealthProbe" . }}
{{- else }}
{{- include "grpo.grpcProbe" . }}
{{- end }}
{{- end }}

{{/*
The trainer's probe: gRPC health on its API port, or, with trainer.tls.enabled, the same health over HTTP
on its metrics port (kubelet's grpc probes speak no TLS): 503 while the model loads, after a failed load
and while draining (docs/helm.md, "Trainer API TLS").
(dict "root" $root "port" 50051 "metricsPort" 9090 "probe" $t.readinessProbe)
*/}}
{{- define "grpo.trainerProbe" -}}
{{- if .root.Values.trainer.tls.enabled }}
{{- include "grpo.httpHealthProbe" . }}
{{- else }}
{{- include "grpo.grpcProbe" . }}
{{- end }}
{{- end }}

{{- /* Where the trainer API's certificate, key and client CA are mounted (trainer.tls). */}}
{{- define "grpo.apiTLSDir" -}}
/etc/grpo/api-tls
{{- end }}

{{- /* Where the reward TLS files are mounted, in the reward pods and in the trainer's. */}}
{{- define "grpo.rewardTLSDir" -}}
/etc/grpo/reward-tls
{{- end }}

{{- /* At most 52 characters: the trainer's StatefulSet takes this name, and its controller labels each pod
controller-revision-hash=<name>-<10-character hash>, a label value of at most 63 (a longer name: no pod). */}}
{{- define "grpo.trainerName" -}}
{{- printf "%s-trainer" (include "grpo.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- /* The trainer StatefulSet's headless Service (the pods' DNS names); a DNS label like every name. */}}
{{- define "grpo.trainerHeadlessName" -}}
{{- printf "%s-headless" (include "grpo.trainerName" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- /* The full name is shortened, never the backend's name: cut at 63 whole, a 53-character release gave
its backends names that differed only past the cut. */}}
{{- define "grpo.rewardName" -}}
{{- $suffix := printf "-%s" .name }}
{{- printf "%s%s" (include "grpo.fullname" .root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- /* The headless Service of a reward backend's pods: its DNS name resolves to every ready pod, and the
trainer (gRPC round_robin) spreads its calls over them; the registry points here. */}}
{{- define "grpo.rewardPodsName" -}}
{{- $suffix := printf "-%s-pods" .name }}
{{- printf "%s%s" (include "grpo.fullname" .root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "grpo.authSecretName" -}}
{{- default (printf "%s-auth" (include "grpo.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "grpo.authSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}tokens.yaml{{ end }}
{{- end }}

{{/* The trainer's config file: values.trainer.config with the chart-managed paths set. */}}
{{- define "grpo.trainerConfig" -}}
{{- $cfg := deepCopy (.Values.trainer.config | default dict) }}
{{- $rewards := get $cfg "rewards" | default dict }}
{{- $_ := set $rewards "registry_file" "/etc/grpo/registry/registry.yaml" }}
{{- $_ := set $cfg "rewards" $rewards }}
{{- if .Values.auth.enabled }}
{{- $auth := get $cfg "auth" | default dict }}
{{- $_ := set $auth "tokens_file" "/etc/grpo/auth/tokens.yaml" }}
{{- $_ := set $cfg "auth" $auth }}
{{- end }}
{{- if .Values.trainer.tls.enabled }}
{{- $dir := include "grpo.apiTLSDir" . }}
{{- $server := get $cfg "server" | default dict }}
{{- $_ := set $server "tls_cert" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $server "tls_key" (printf "%s/tls.key" $dir) }}
{{- if .Values.trainer.tls.mutual }}
{{- $_ := set $server "tls_client_ca" (printf "%s/client-ca.crt" $dir) }}
{{- end }}
{{- $_ := set $cfg "server" $server }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* The reward registry file: the enabled reward services of this release, then extraBackends. */}}
{{- define "grpo.registry" -}}
{{- $backends := dict }}
{{- range $name := list "math" "code" "rm" }}
{{- $r := index $.Values.rewards $name }}
{{- if $r.enabled }}
{{- $entry := deepCopy ($r.registry | default dict) }}
{{- $_ := set $entry "address" (printf "%s:%d" (include "grpo.rewardPodsName" (dict "root" $ "name" $name)) 50051) }}
{{- if $.Values.rewards.tls.enabled }}
{{- $dir := include "grpo.rewardTLSDir" $ }}
{{- $_ := set $entry "tls" true }}
{{- $_ := set $entry "ca_file" (printf "%s/ca.crt" $dir) }}
{{- if $.Values.rewards.tls.mutual }}
{{- $_ := set $entry "cert_file" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $entry "key_file" (printf "%s/tls.key" $dir) }}
{{- end }}
{{- else }}
{{- $_ := set $entry "tls" false }}
{{- end }}
{{- $_ := set $backends $name $entry }}
{{- end }}
{{- end }}
{{- range $name, $entry := .Values.trainer.extraBackends }}
{{- $_ := set $backends $name $entry }}
{{- end }}
{{- toYaml (dict "backends" $backends) }}
{{- end }}

{{/* The trainer's training.engine: trainer.config.training.engine, else the config's default (torch). */}}
{{- define "grpo.trainingEngine" -}}
{{- $training := get (.Values.trainer.config | default dict) "training" | default dict -}}
{{- get $training "engine" | default "torch" -}}
{{- end }}

{{/* The trainer's model.source: trainer.config.model.source, else the config's default. */}}
{{- define "grpo.modelSource" -}}
{{- $model := get (.Values.trainer.config | default dict) "model" | default dict -}}
{{- get $model "source" | default "tiny" -}}
{{- end }}

{{/* Ranks per node of a trainer started by grpo_server.launch (several nodes, or DeepSpeed on one):
multiNode.nprocPerNode, else the GPUs per pod, else 1. */}}
{{- define "grpo.nprocPerNode" -}}
{{- $t := .Values.trainer -}}
{{- if $t.multiNode.nprocPerNode -}}
{{- $t.multiNode.nprocPerNode -}}
{{- else if gt (int $t.gpu.count) 0 -}}
{{- $t.gpu.count -}}
{{- else -}}
1
{{- end -}}
{{- end }}

{{/* The LeaderWorkerSet's name. Not the API Service's: the LWS controller creates a headless Service
named after the LWS for the pods' DNS names (LWS_LEADER_ADDRESS), and skips it when one exists. */}}
{{- define "grpo.trainerGroupName" -}}
{{- /* At most 46 characters: the LWS webhook wants a DNS-1035 label, and the controller names the worker
StatefulSets <name>-<group index>, whose pods' revision-hash labels must stay within 63. */}}
{{- include "grpo.trainerName" . | trunc 40 | trimSuffix "-" }}-group
{{- end }}

{{/* The shared (ReadWriteMany) checkpoints claim of a multi-node trainer. */}}
{{- define "grpo.checkpointsClaim" -}}
{{- .Values.trainer.multiNode.checkpoints.existingClaim | default (printf "%s-checkpoints" (include "grpo.trainerName" .)) }}
{{- end }}

{{/*
Rules of the programs that values.schema.json cannot express (they relate two values), checked at
install so that a value the schema accepts does not give a trainer that exits 2 at start and
crash-loops. The trainer's config model (grpo_server/config.py) is the source of these rules and of
the defaults below; tests/helm/test_helm_install_checks.py keeps the two in step.
*/}}
{{- define "grpo.validate" -}}
{{- $t := .Values.trainer }}
{{- if eq (int $t.grpcPort) (int $t.metricsPort) }}
{{- fail (printf "trainer.grpcPort and trainer.metricsPort are both %d: the trainer refuses one port for its gRPC API and its metrics (server.listen, server.metrics_listen)" (int $t.grpcPort)) }}
{{- end }}
{{- $engine := include "grpo.trainingEngine" . }}
{{- if and $t.multiNode.enabled (ne $engine "deepspeed") }}
{{- fail (printf "trainer.multiNode.enabled needs trainer.config.training.engine: deepspeed (it is %q): only DeepSpeed's ranks follow rank 0; with another engine every rank would start a trainer of its own" $engine) }}
{{- end }}
{{- if and (or $t.multiNode.enabled (eq $engine "deepspeed")) (has (int $t.multiNode.rendezvousPort) (list (int $t.grpcPort) (int $t.metricsPort))) }}
{{- fail (printf "trainer.multiNode.rendezvousPort %d is also the trainer's gRPC or metrics port: torchrun's rendezvous store (multi-node, or DeepSpeed on one node) needs a port of its own" (int $t.multiNode.rendezvousPort)) }}
{{- end }}
{{- $cfg := $t.config | default dict }}
{{- $rollout := get $cfg "rollout" | default dict }}
{{- $ranks := mul (ternary (int $t.multiNode.size) 1 $t.multiNode.enabled) (int (include "grpo.nprocPerNode" .)) }}
{{- if and (or $t.multiNode.enabled (eq $engine "deepspeed")) (gt (int $ranks) 1) (eq (toString (get $rollout "engine" | default "auto")) "vllm") }}
{{- fail (printf "trainer.config.rollout.engine: vllm cannot run beside DeepSpeed's %d ranks (in the trainer's process vLLM joins the ranks' process group and waits in its set-up for ranks that never come): set it to hf, or auto (hf there)" (int $ranks)) }}
{{- end }}
{{- $server := get $cfg "server" | default dict }}
{{- range $k := list "tls_cert" "tls_key" "tls_client_ca" }}
{{- if hasKey $server $k }}
{{- fail (printf "trainer.config.server.%s: the chart sets the trainer's TLS files itself; use trainer.tls (enabled, secretName: a kubernetes.io/tls Secret; mutual, clientCASecretName), which mounts the Secret and switches the probes to HTTP /healthz on the metrics port (Kubernetes' grpc probes speak no TLS: with this key alone the pod would never turn ready)" $k) }}
{{- end }}
{{- end }}
{{- $atls := $t.tls }}
{{- if and $atls.enabled (not $atls.secretName) }}
{{- fail "trainer.tls.secretName is required when trainer.tls.enabled: the name of a Secret of type kubernetes.io/tls in the release's namespace holding tls.crt and tls.key (cert-manager's layout), the certificate of the trainer's API" }}
{{- end }}
{{- if and $atls.mutual (not $atls.enabled) }}
{{- fail "trainer.tls.mutual needs trainer.tls.enabled: true (and trainer.tls.secretName): client certificates are checked only over TLS" }}
{{- end }}
{{- if and $atls.enabled $atls.mutual (not $atls.clientCASecretName) }}
{{- fail "trainer.tls.clientCASecretName is required when trainer.tls.mutual: the name of a Secret in the release's namespace whose ca.crt is the CA the API's clients' certificates must chain to (e.g. the kubernetes.io/tls Secret of a client certificate cert-manager issued)" }}
{{- end }}
{{- $rtls := .Values.rewards.tls }}
{{- if and $rtls.enabled (not $rtls.secretName) }}
{{- fail "rewards.tls.secretName is required when rewards.tls.enabled: the name of a Secret of type kubernetes.io/tls in the release's namespace holding tls.crt, tls.key and ca.crt (cert-manager's layout), the reward services' certificate" }}
{{- end }}
{{- if and $rtls.mutual (not $rtls.enabled) }}
{{- fail "rewards.tls.mutual needs rewards.tls.enabled: true (and rewards.tls.secretName): client certificates are checked only over TLS" }}
{{- end }}
{{- if and $rtls.enabled $rtls.mutual (not $rtls.clientSecretName) }}
{{- fail "rewards.tls.clientSecretName is required when rewards.tls.mutual: the name of a Secret of type kubernetes.io/tls holding the trainer's client certificate (tls.crt, tls.key) and ca.crt, the CA the reward services check it against" }}
{{- end }}
{{- /* rewards.default names backends the trainer's registry holds: a disabled service of this release
is in none, and every prompt submitted without rewards of its own would be refused naming it. */}}
{{- $rewardsCfg := get $cfg "rewards" | default dict }}
{{- $known := keys ($t.extraBackends | default dict) }}
{{- $known = concat $known (keys (get $rewardsCfg "backends" | default dict)) }}
{{- range $name := list "math" "code" "rm" }}
{{- if (index $.Values.rewards $name).enabled }}{{ $known = append $known $name }}{{ end }}
{{- end }}
{{- range $spec := (get $rewardsCfg "default" | default list) }}
{{- $b := (get $spec "backend") | toString }}
{{- if not (has $b $known) }}
{{- fail (printf "trainer.config.rewards.default names the reward backend %q, which this release does not give the trainer (known: %s): enable rewards.%s, add it to trainer.extraBackends, or name another; every prompt submitted without rewards of its own would be refused" $b (join ", " (sortAlpha $known)) $b) }}
{{- end }}
{{- end }}
{{- /* grpo_server.config.Config: limits.max_watch_streams (default 48) < server.max_workers (default 64). */}}
{{- $limits := get $cfg "limits" | default dict }}
{{- $streams := hasKey $limits "max_watch_streams" | ternary (get $limits "max_watch_streams") 48 }}
{{- $workers := hasKey $server "max_workers" | ternary (get $server "max_workers") 64 }}
{{- if ge (int $streams) (int $workers) }}
{{- fail (printf "trainer.config.limits.max_watch_streams (%d) must be less than trainer.config.server.max_workers (%d): each open WatchSteps stream holds a handler thread, and the other RPCs and health checks need some" (int $streams) (int $workers)) }}
{{- end }}
{{- $model := get $cfg "model" | default dict }}
{{- if and (eq (get $model "source" | toString) "path") (not (get $model "path")) }}
{{- fail "trainer.config.model.path is required when trainer.config.model.source is 'path' (e.g. /models/policy with trainer.modelVolume)" }}
{{- end }}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) }}
{{- $names := list }}
{{- $digests := dict }}
{{- range .Values.auth.tokens }}
{{- if has .name $names }}
{{- fail (printf "auth.tokens: the name %q is used twice; the trainer refuses a tokens file that names a token twice" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- $digest := .token_sha256 | toString }}
{{- if hasKey $digests $digest }}
{{- fail (printf "auth.tokens: %q has the same token_sha256 as %q; the trainer refuses a tokens file with one token under two entries" .name (get $digests $digest)) }}
{{- end }}
{{- $_ := set $digests $digest .name }}
{{- end }}
{{- end }}
{{- end }}
