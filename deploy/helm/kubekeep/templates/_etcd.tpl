{{/*
How a kubekeep pod reaches etcd, from .Values.etcd: shared by the etcd CronJob (`backup
etcd://...`) and the etcdFollow Deployment (`etcd follow etcd://...`). A JSON object, read with
`include "kubekeep.etcdConnection" . | fromJson`:
  uri        etcd://ENDPOINTS (default: the node's own etcd, $(HOST_IP):2379)
  tlsArgs    --cacert/--cert/--key and --etcd-server-name (a list)
  env        the HOST_IP variable the default endpoint names
  volume     the certificates: the node's hostPath, or a Secret
  mounts     their read-only mount at /etc/kubekeep/etcd
  runAsRoot  true with a hostPath (kubeadm's key files are root's alone)
*/}}
{{- define "kubekeep.etcdConnection" -}}
{{- $e := .Values.etcd -}}
{{- $dir := "/etc/kubekeep/etcd" -}}
{{- $args := list -}}
{{- with $e.tls }}
{{- $args = concat $args (list "--cacert" (printf "%s/%s" $dir .caFile) "--cert" (printf "%s/%s" $dir .certFile) "--key" (printf "%s/%s" $dir .keyFile)) }}
{{- end }}
{{- with $e.serverName }}{{ $args = concat $args (list "--etcd-server-name" .) }}{{ end }}
{{- $env := list (dict "name" "HOST_IP" "valueFrom" (dict "fieldRef" (dict "fieldPath" "status.hostIP"))) }}
{{- $mounts := list (dict "name" "etcd-certs" "mountPath" $dir "readOnly" true) }}
{{- $volume := dict }}
{{- if eq $e.tls.source "hostPath" }}
{{- $volume = dict "name" "etcd-certs" "hostPath" (dict "path" $e.tls.hostPath "type" "Directory") }}
{{- else }}
{{- $secret := required "etcd.tls.secretName is required with etcd.tls.source=secret" $e.tls.secretName }}
{{- $volume = dict "name" "etcd-certs" "secret" (dict "secretName" $secret "defaultMode" 288) }}
{{- end }}
{{- toJson (dict "uri" (printf "etcd://%s" ($e.endpoints | default "$(HOST_IP):2379")) "tlsArgs" $args "env" $env "volume" $volume "mounts" $mounts "runAsRoot" (eq $e.tls.source "hostPath")) -}}
{{- end -}}
