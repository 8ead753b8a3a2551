{{/*
The trainer's pod template, shared by the StatefulSet (one node) and the LeaderWorkerSet (several).
(dict "root" $ "role" "single" | "leader" | "worker")
  single: the StatefulSet pod; its store PVC comes from volumeClaimTemplates ("store").
  leader: node 0 of the group; its global rank 0 serves the API; its store is the PVC "<trainer>-store".
  worker: node 1.. of the group; no API, no store of its own (emptyDir scratch).
Leader and workers run the same command, `python -m grpo_server.launch` (grpo_server/launch.py), which
reads LWS_LEADER_ADDRESS, LWS_GROUP_SIZE and LWS_WORKER_INDEX (set by LeaderWorkerSet) and starts
torchrun across the group. The single pod runs it too when its training engine is DeepSpeed (a rank per
GPU), with those variables set here to a group of one on 127.0.0.1; with the torch engine it runs
`grpo-server` itself. Both mount the shared checkpoints volume at /var/lib/grpo/checkpoints: every
rank writes its DeepSpeed shard there and reads it back on resume.
*/}}
{{- define "grpo.trainerPodTemplate" -}}
{{- $root := .root }}
{{- $t := $root.Values.trainer }}
{{- $role := .role }}
{{- $launched := or $t.multiNode.enabled (eq (include "grpo.trainingEngine" $root) "deepspeed") }}
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
  {{- if and $t.compactStoreOnStart (ne $role "worker") }}
  initContainers:
    # trainer.compactStoreOnStart: before the trainer starts, apply retention.* to the store and
    # rewrite its database to the size of what it holds (grpo-server --compact-store; docs/operations.md).
    - name: compact-store
      image: {{ include "grpo.image" (dict "root" $root "image" $t.image) | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command:
        - grpo-server
        - --compact-store
        - --config
        - /etc/grpo/config.yaml
        - --store-dir
        - /var/lib/grpo
      env:
        - name: HOME
          value: /var/cache/grpo/home
        # VACUUM's copy of the database goes beside it, on the store's volume, not in /tmp.
        - name: SQLITE_TMPDIR
          value: /var/lib/grpo
      resources:
        {{- include "grpo.resources" (dict "resources" $t.resources "gpu" (dict "count" 0)) | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/grpo/config.yaml
          subPath: config.yaml
          readOnly: true
        - name: store
          mountPath: /var/lib/grpo
        - name: cache
          mountPath: /var/cache/grpo
        - name: tmp
          mountPath: /tmp
  {{- end }}
  containers:
    - name: trainer
      image: {{ include "grpo.image" (dict "root" $root "image" $t.image) | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command:
        {{- if $launched }}
        - python
        - -m
        - grpo_server.launch
        - --nproc-per-node
        - {{ include "grpo.nprocPerNode" $root | quote }}
        - --rendezvous-port
        - {{ $t.multiNode.rendezvousPort | quote }}
        - --
        {{- else }}
        - grpo-server
        {{- end }}
        - --config
        - /etc/grpo/config.yaml
        - --listen
        - 0.0.0.0:{{ $t.grpcPort }}
        - --metrics-listen
        - 0.0.0.0:{{ $t.metricsPort }}
        - --store-dir
        - /var/lib/grpo
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
        {{- /* LeaderWorkerSet sets LWS_LEADER_ADDRESS, LWS_GROUP_SIZE and LWS_WORKER_INDEX itself. */}}
        {{- if and $launched (not $t.multiNode.enabled) }}
        # DeepSpeed on one pod: grpo_server.launch starts a rank per GPU as a group of one node.
        - name: LWS_LEADER_ADDRESS
          value: 127.0.0.1
        - name: LWS_GROUP_SIZE
          value: "1"
        - name: LWS_WORKER_INDEX
          value: "0"
        {{- end }}
        {{- with $t.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if ne $role "worker" }}
      ports:
        - name: grpc
          containerPort: {{ $t.grpcPort }}
          protocol: TCP
        - name: metrics
          containerPort: {{ $t.metricsPort }}
          protocol: TCP
        {{- if eq $role "leader" }}
        # The leader's torchrun hosts the group's rendezvous store here.
        - name: rendezvous
          containerPort: {{ $t.multiNode.rendezvousPort }}
          protocol: TCP
        {{- end }}
      startupProbe:
        {{- include "grpo.trainerProbe" (dict "root" $root "port" $t.grpcPort "metricsPort" $t.metricsPort "probe" $t.startupProbe) | nindent 8 }}
      readinessProbe:
        {{- include "grpo.trainerProbe" (dict "root" $root "port" $t.grpcPort "metricsPort" $t.metricsPort "probe" $t.readinessProbe) | nindent 8 }}
      livenessProbe:
        {{- include "grpo.trainerProbe" (dict "root" $root "port" $t.grpcPort "metricsPort" $t.metricsPort "probe" $t.livenessProbe) | nindent 8 }}
      {{- end }}
      {{- /* A worker serves nothing and listens on no fixed port (its collectives use ephemeral
      ports): no probes. A worker rank that fails ends its torchrun, the pod restarts, and
      RecreateGroupOnPodRestart restarts the whole group. */}}
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
        {{- if $root.Values.rewards.tls.enabled }}
        # The files the registry's ca_file (and with mutual cert_file, key_file) name.
        - name: reward-tls
          mountPath: {{ include "grpo.rewardTLSDir" $root }}
          readOnly: true
        {{- end }}
        {{- if and $t.tls.enabled (ne $role "worker") }}
        # The API's certificate and key (server.tls_cert, tls_key; with mutual the client CA,
        # server.tls_client_ca): only where rank 0 serves the API, not on the workers.
        - name: api-tls
          mountPath: {{ include "grpo.apiTLSDir" $root }}
          readOnly: true
        {{- end }}
        {{- if $root.Values.auth.enabled }}
        - name: auth
          mountPath: /etc/grpo/auth
          readOnly: true
        {{- end }}
        - name: store
          mountPath: /var/lib/grpo
        {{- if $t.multiNode.enabled }}
        # Every rank of every node writes its DeepSpeed shard under checkpoints/ and reads it back on
        # resume: a volume all nodes share (ReadWriteMany).
        - name: checkpoints
          mountPath: /var/lib/grpo/checkpoints
        {{- end }}
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
        {{- with $t.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "grpo.trainerName" $root }}-config
    - name: registry
      configMap:
        name: {{ include "grpo.trainerName" $root }}-registry
    {{- with $root.Values.rewards.tls }}
    {{- if .enabled }}
    # The CA that verifies the reward services (not their key); with mutual, the trainer's client
    # certificate and key.
    - name: reward-tls
      projected:
        sources:
          - secret:
              name: {{ .secretName | quote }}
              items:
                - key: ca.crt
                  path: ca.crt
          {{- if .mutual }}
          - secret:
              name: {{ .clientSecretName | quote }}
              items:
                - key: tls.crt
                  path: tls.crt
                - key: tls.key
                  path: tls.key
          {{- end }}
    {{- end }}
    {{- end }}
    {{- with $t.tls }}
    {{- if and .enabled (ne $role "worker") }}
    - name: api-tls
      projected:
        sources:
          - secret:
              name: {{ .secretName | quote }}
              items:
                - key: tls.crt
                  path: tls.crt
                - key: tls.key
                  path: tls.key
          {{- if .mutual }}
          - secret:
              name: {{ .clientCASecretName | quote }}
              items:
                - key: ca.crt
                  path: client-ca.crt
          {{- end }}
    {{- end }}
    {{- end }}
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
    {{- if $t.multiNode.enabled }}
    - name: checkpoints
      persistentVolumeClaim:
        claimName: {{ include "grpo.checkpointsClaim" $root }}
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
    {{- with $t.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
