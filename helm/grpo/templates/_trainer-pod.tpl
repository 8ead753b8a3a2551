{{/*
The trainer's pod template, shared by the StatefulSet (one node) and the LeaderWorkerSet (several).
(dict "root" $ "role" "single" | "leader" | "worker")
  single: the StatefulSet pod; its store PVC comes from volumeClaimTemplates ("store").
  leader: serves the API; its store is the chart's PVC "<trainer>-store".
  worker: joins the leader at LWS_LEADER_ADDRESS; no API, no store (emptyDir scratch).
*/}}
{{- define "grpo.trainerPodTemplate" -}}
{{- $root := .root }}
{{- $t := $root.Values.trainer }}
{{- $role := .role }}
metadata:
  labels:
    {{- include "grpo.componentLabels" (dict "root" $root "component" "trainer") | nindent 4 }}
    {{- with $t.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Restart on a config change only; the registry and the tokens are reloaded in place.
    checksum/config: {{ include "grpo.trainerConfig" $root | sha256sum }}
    {{- include "grpo.checkovAnnotations" (dict "root" $root "image" $t.image) | trim | nindent 4 }}
    {{- with $t.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "grpo.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $t.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- with $t.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $t.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $t.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $t.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $t.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: trainer
      image: {{ include "grpo.image" (dict "root" $root "image" $t.image) | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- if eq $role "worker" }}
      command:
        {{- toYaml $t.multiNode.workerCommand | nindent 8 }}
      {{- else }}
      command:
        - grpo-server
        - --config
        - /etc/grpo/config.yaml
        - --listen
        - 0.0.0.0:{{ $t.grpcPort }}
        - --metrics-listen
        - 0.0.0.0:{{ $t.metricsPort }}
        - --store-dir
        - /var/lib/grpo
      {{- end }}
      env:
        # Caches live on a writable emptyDir: the root filesystem is read-only.
        - name: HOME
          value: /var/cache/grpo/home
        - name: XDG_CACHE_HOME
          value: /var/cache/grpo
        - name: HF_HOME
          value: /var/cache/grpo/huggingface
        - name: TRITON_CACHE_DIR
          value: /var/cache/grpo/triton
        - name: TORCHINDUCTOR_CACHE_DIR
          value: /var/cache/grpo/inductor
        - name: VLLM_CACHE_ROOT
          value: /var/cache/grpo/vllm
        - name: TMPDIR
          value: /tmp
        {{- if $t.multiNode.enabled }}
        # LeaderWorkerSet sets LWS_LEADER_ADDRESS, LWS_GROUP_SIZE and LWS_WORKER_INDEX itself.
        - name: GRPO_RENDEZVOUS_PORT
          value: {{ $t.multiNode.rendezvousPort | quote }}
        - name: GRPO_NODE_ROLE
          value: {{ $role }}
        {{- end }}
        {{- with $t.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        {{- if ne $role "worker" }}
        - name: grpc
          containerPort: {{ $t.grpcPort }}
          protocol: TCP
        - name: metrics
          containerPort: {{ $t.metricsPort }}
          protocol: TCP
        {{- end }}
        {{- if $t.multiNode.enabled }}
        - name: rendezvous
          containerPort: {{ $t.multiNode.rendezvousPort }}
          protocol: TCP
        {{- end }}
      {{- if ne $role "worker" }}
      startupProbe:
        {{- include "grpo.grpcProbe" (dict "port" $t.grpcPort "probe" $t.startupProbe) | nindent 8 }}
      readinessProbe:
        {{- include "grpo.grpcProbe" (dict "port" $t.grpcPort "probe" $t.readinessProbe) | nindent 8 }}
      livenessProbe:
        {{- include "grpo.grpcProbe" (dict "port" $t.grpcPort "probe" $t.livenessProbe) | nindent 8 }}
      {{- else }}
      {{- /* A worker serves no gRPC: liveness is its rendezvous port being open. */}}
      startupProbe:
        tcpSocket:
          port: {{ $t.multiNode.rendezvousPort }}
        {{- toYaml $t.startupProbe | nindent 8 }}
      readinessProbe:
        tcpSocket:
          port: {{ $t.multiNode.rendezvousPort }}
        {{- toYaml $t.readinessProbe | nindent 8 }}
      livenessProbe:
        tcpSocket:
          port: {{ $t.multiNode.rendezvousPort }}
        {{- toYaml $t.livenessProbe | nindent 8 }}
      {{- end }}
      resources:
        {{- include "grpo.resources" (dict "resources" $t.resources "gpu" $t.gpu) | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/grpo/config.yaml
          subPath: config.yaml
          readOnly: true
        # A directory mount, not subPath: kubelet's updates must reach the file.
        - name: registry
          mountPath: /etc/grpo/registry
          readOnly: true
        {{- if $root.Values.auth.enabled }}
        - name: auth
          mountPath: /etc/grpo/auth
          readOnly: true
        {{- end }}
        - name: store
          mountPath: /var/lib/grpo
        - name: shm
          mountPath: /dev/shm
        - name: cache
          mountPath: /var/cache/grpo
        - name: tmp
          mountPath: /tmp
        {{- if $t.modelVolume }}
        - name: model
          mountPath: /models
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "grpo.trainerName" $root }}-config
    - name: registry
      configMap:
        name: {{ include "grpo.trainerName" $root }}-registry
    {{- if $root.Values.auth.enabled }}
    - name: auth
      secret:
        secretName: {{ include "grpo.authSecretName" $root }}
        # Only the hashes file; a generated admin token's plaintext stays out of the pod.
        items:
          - key: {{ include "grpo.authSecretKey" $root }}
            path: tokens.yaml
    {{- end }}
    {{- if eq $role "leader" }}
    - name: store
      persistentVolumeClaim:
        claimName: {{ include "grpo.trainerName" $root }}-store
    {{- else if eq $role "worker" }}
    - name: store
      emptyDir: {}
    {{- end }}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $t.shm.sizeLimit }}
    - name: cache
      emptyDir:
        sizeLimit: {{ $t.cache.sizeLimit }}
    - name: tmp
      emptyDir:
        sizeLimit: 10Gi
    {{- with $t.modelVolume }}
    - name: model
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
