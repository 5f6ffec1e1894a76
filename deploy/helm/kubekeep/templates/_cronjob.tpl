{{/*
One kubekeep CronJob. Parameters (a dict):
  root        the chart's top-level context
  component   the job's name (manifests, volumes, etcd, retention, check, drill)
  job         the job's values (its keys take precedence over jobDefaults; maps merge)
  args        kubekeep's arguments (a list)
  account     ServiceAccount suffix (backup, volumes, repository, drill)
  token       mount the ServiceAccount token (only jobs that call the Kubernetes API)
  env         extra EnvVars (list, optional)
  volumes     extra volumes (list, optional); mounts: their mounts (list, optional)
  runAsRoot   run as uid 0 with no capabilities (etcd certificates from a hostPath)
*/}}
{{- define "kubekeep.cronjob" -}}
{{- $root := .root -}}
{{- $s := merge (deepCopy .job) (deepCopy $root.Values.jobDefaults) -}}
{{- $name := include "kubekeep.partName" (dict "root" $root "part" .component) -}}
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kubekeep.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  schedule: {{ $s.schedule | quote }}
  {{- with $s.timeZone }}
  timeZone: {{ . | quote }}
  {{- end }}
  concurrencyPolicy: {{ $s.concurrencyPolicy }}
  suspend: {{ $s.suspend }}
  successfulJobsHistoryLimit: {{ $s.successfulJobsHistoryLimit }}
  failedJobsHistoryLimit: {{ $s.failedJobsHistoryLimit }}
  {{- if not (kindIs "invalid" $s.startingDeadlineSeconds) }}
  startingDeadlineSeconds: {{ $s.startingDeadlineSeconds }}
  {{- end }}
  jobTemplate:
    metadata:
      labels:
        {{- include "kubekeep.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
    spec:
      backoffLimit: {{ $s.backoffLimit }}
      activeDeadlineSeconds: {{ $s.activeDeadlineSeconds }}
      {{- if not (kindIs "invalid" $s.ttlSecondsAfterFinished) }}
      ttlSecondsAfterFinished: {{ $s.ttlSecondsAfterFinished }}
      {{- end }}
      # Runs that cannot succeed by trying again are not retried: a usage error (2), a backup
      # saved with warnings (3), no repository (10), a wrong password (12), damaged data (13).
      podFailurePolicy:
        rules:
          - action: Ignore
            onPodConditions:
              - type: DisruptionTarget
          - action: FailJob
            onExitCodes:
              containerName: kubekeep
              operator: In
              values: [2, 3, 10, 12, 13, 18]
      template:
        metadata:
          labels:
            {{- include "kubekeep.selectorLabels" $root | nindent 12 }}
            app.kubernetes.io/component: {{ .component }}
            {{- with $s.podLabels }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with $s.podAnnotations }}
          annotations:
            {{- toYaml . | nindent 12 }}
          {{- end }}
        spec:
          restartPolicy: Never
          serviceAccountName: {{ include "kubekeep.serviceAccountName" (dict "root" $root "account" .account) }}
          automountServiceAccountToken: {{ .token }}
          enableServiceLinks: false
          {{- with $s.priorityClassName }}
          priorityClassName: {{ . }}
          {{- end }}
          {{- with $root.Values.imagePullSecrets }}
          imagePullSecrets:
            {{- range . }}
            - name: {{ . }}
            {{- end }}
          {{- end }}
          {{- with $s.nodeSelector }}
          nodeSelector:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $s.tolerations }}
          tolerations:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $s.affinity }}
          affinity:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- if .runAsRoot }}
            {{- include "kubekeep.rootPodSecurityContext" $root | nindent 12 }}
            {{- else }}
            {{- include "kubekeep.podSecurityContext" $root | nindent 12 }}
            {{- end }}
          containers:
            - name: kubekeep
              image: {{ include "kubekeep.image" $root }}
              imagePullPolicy: {{ $root.Values.image.pullPolicy }}
              command: ["kubekeep"]
              args:
                {{- range concat .args ($s.extraArgs | default list) }}
                - {{ . | toString | quote }}
                {{- end }}
              env:
                {{- if and .credentials .credentials.existingSecret }}
                {{- /* this job's own S3 credentials (the retention job's prune role), else the repository's */}}
                {{- $own := dict "Values" (merge (dict "repository" (dict "s3" (dict "credentials" (merge (deepCopy .credentials) (deepCopy $root.Values.repository.s3.credentials))))) (deepCopy $root.Values)) }}
                {{- include "kubekeep.env" (merge $own $root) | nindent 16 }}
                {{- else }}
                {{- include "kubekeep.env" $root | nindent 16 }}
                {{- end }}
                {{- with .env }}
                {{- toYaml . | nindent 16 }}
                {{- end }}
              {{- with $s.resources }}
              resources:
                {{- toYaml . | nindent 16 }}
              {{- end }}
              securityContext:
                {{- if .runAsRoot }}
                {{- include "kubekeep.rootContainerSecurityContext" $root | nindent 16 }}
                {{- else }}
                {{- include "kubekeep.containerSecurityContext" $root | nindent 16 }}
                {{- end }}
              volumeMounts:
                {{- include "kubekeep.volumeMounts" $root | nindent 16 }}
                {{- with .mounts }}
                {{- toYaml . | nindent 16 }}
                {{- end }}
          volumes:
            {{- include "kubekeep.volumes" (dict "root" $root "cacheSizeLimit" $s.cacheSizeLimit "tmpSizeLimit" $s.tmpSizeLimit) | nindent 12 }}
            {{- with .volumes }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
{{- end -}}
