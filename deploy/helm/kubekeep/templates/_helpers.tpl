{{/* Names, labels and the parts every kubekeep pod shares. */}}

{{- define "kubekeep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubekeep.fullname" -}}
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

{{/* A name for one part: <fullname>-<part>, kept within 52 characters (CronJob names). */}}
{{- define "kubekeep.partName" -}}
{{- $full := include "kubekeep.fullname" .root | trunc (int (sub 51 (len .part))) | trimSuffix "-" -}}
{{- printf "%s-%s" $full .part -}}
{{- end -}}

{{- define "kubekeep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubekeep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubekeep.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubekeep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubekeep
{{- end -}}

{{- define "kubekeep.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
ServiceAccounts, one per set of permissions:
  backup:     the manifests job (backup ClusterRole)
  volumes:    the volumes job (volumes ClusterRole, plus backup when it takes every manifest)
  repository: etcd, retention, check and metrics (no Kubernetes API permission at all)
  restore:    only when rbac.restore.bind
  drill:      the drill job (drill ClusterRole: restore, and delete its scratch namespaces)
*/}}
{{- define "kubekeep.serviceAccountName" -}}
{{- include "kubekeep.partName" (dict "root" .root "part" .account) -}}
{{- end -}}

{{- define "kubekeep.serviceAccountAnnotations" -}}
{{- $a := deepCopy (.Values.serviceAccount.annotations | default dict) -}}
{{- with .Values.workloadIdentity.awsRoleArn }}{{ $_ := set $a "eks.amazonaws.com/role-arn" . }}{{ end -}}
{{- with .Values.workloadIdentity.gcpServiceAccount }}{{ $_ := set $a "iam.gke.io/gcp-service-account" . }}{{ end -}}
{{- if $a }}{{ toYaml $a }}{{ end -}}
{{- end -}}

{{- define "kubekeep.passwordSecret" -}}
{{- if .Values.repository.password.existingSecret -}}
{{- .Values.repository.password.existingSecret -}}
{{- else if .Values.repository.password.value -}}
{{- include "kubekeep.partName" (dict "root" . "part" "password") -}}
{{- else -}}
{{- fail "repository.password: give existingSecret (a Secret with the password) or value (the chart makes the Secret)" -}}
{{- end -}}
{{- end -}}

{{- define "kubekeep.repository" -}}
{{- $location := required "repository.location is required: s3://BUCKET/PREFIX, oci://REGISTRY/REPOSITORY or a path on repository.pvc" .Values.repository.location -}}
{{- if and (not (hasPrefix "s3://" $location)) (not (hasPrefix "oci://" $location)) (not .Values.repository.pvc.claimName) -}}
{{- fail "repository.location is a path: give repository.pvc.claimName, the claim it is on (a pod's own files do not last)" -}}
{{- end -}}
{{- $location -}}
{{- end -}}

{{/* The environment of every kubekeep container: the repository, its password, S3, CA, cache. */}}
{{- define "kubekeep.env" -}}
- name: KUBEKEEP_REPOSITORY
  value: {{ include "kubekeep.repository" . | quote }}
- name: KUBEKEEP_PASSWORD_FILE
  value: /etc/kubekeep/password/password
- name: KUBEKEEP_CACHE_DIR
  value: /cache
- name: HOME
  value: /tmp
{{- with .Values.repository.s3.endpoint }}
- name: KUBEKEEP_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.repository.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.repository.s3.credentials }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- if .sessionTokenKey }}
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .sessionTokenKey }}
{{- end }}
{{- end }}
{{- end }}
{{- if or .Values.repository.ca.secretName .Values.repository.ca.configMapName }}
- name: AWS_CA_BUNDLE
  value: /etc/kubekeep/ca/ca.crt
- name: SSL_CERT_FILE
  value: /etc/kubekeep/ca/ca.crt
- name: KUBEKEEP_REGISTRY_CA
  value: /etc/kubekeep/ca/ca.crt
{{- end }}
{{- if .Values.repository.oci.dockerConfig.existingSecret }}
- name: DOCKER_CONFIG
  value: /etc/kubekeep/docker
{{- end }}
{{- if .Values.repository.oci.insecure }}
- name: KUBEKEEP_INSECURE_REGISTRY
  value: "1"
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kubekeep.volumeMounts" -}}
- name: password
  mountPath: /etc/kubekeep/password
  readOnly: true
- name: cache
  mountPath: /cache
- name: tmp
  mountPath: /tmp
{{- if or .Values.repository.ca.secretName .Values.repository.ca.configMapName }}
- name: ca
  mountPath: /etc/kubekeep/ca
  readOnly: true
{{- end }}
{{- if .Values.repository.oci.dockerConfig.existingSecret }}
- name: docker-config
  mountPath: /etc/kubekeep/docker
  readOnly: true
{{- end }}
{{- if .Values.repository.pvc.claimName }}
- name: repository
  mountPath: {{ .Values.repository.pvc.mountPath }}
{{- end }}
{{- end -}}

{{/* Pod volumes; .cacheSizeLimit and .tmpSizeLimit size the emptyDirs. */}}
{{- define "kubekeep.volumes" -}}
{{- $v := .root.Values -}}
- name: password
  secret:
    secretName: {{ include "kubekeep.passwordSecret" .root }}
    defaultMode: 0440
    items:
      - key: {{ $v.repository.password.key }}
        path: password
- name: cache
  emptyDir:
    {{- with .cacheSizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
- name: tmp
  emptyDir:
    {{- with .tmpSizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- if $v.repository.ca.secretName }}
- name: ca
  secret:
    secretName: {{ $v.repository.ca.secretName }}
    defaultMode: 0444
    items:
      - key: {{ $v.repository.ca.key }}
        path: ca.crt
{{- else if $v.repository.ca.configMapName }}
- name: ca
  configMap:
    name: {{ $v.repository.ca.configMapName }}
    defaultMode: 0444
    items:
      - key: {{ $v.repository.ca.key }}
        path: ca.crt
{{- end }}
{{- with $v.repository.oci.dockerConfig }}
{{- if .existingSecret }}
- name: docker-config
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .key }}
        path: config.json
{{- end }}
{{- end }}
{{- if $v.repository.pvc.claimName }}
- name: repository
  persistentVolumeClaim:
    claimName: {{ $v.repository.pvc.claimName }}
{{- end }}
{{- end -}}

{{/* Pod Security "restricted": a non-root user (the image's 65532), no privileges, RuntimeDefault seccomp. */}}
{{- define "kubekeep.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubekeep.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}


{{/* Root with no capabilities: only for pods reading etcd's certificates from the node (hostPath). */}}
{{- define "kubekeep.rootPodSecurityContext" -}}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubekeep.rootContainerSecurityContext" -}}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
