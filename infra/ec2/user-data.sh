#!/bin/bash
# EC2 user data for an espra-node host (Debian 12 / Amazon Linux with Node 20 available).
# Set ROLE, SEEDS and the secret's SSM parameter name in the launch template.
set -euo pipefail
ROLE="${ROLE:-live}"                       # seed | proxy | live | fileserver | app | mail | admin
SEEDS="${SEEDS:-10.0.0.10:7000,10.0.0.11:7000}"
SECRET_PARAM="${SECRET_PARAM:-/espra/cluster-secret}"
REGION_NAME="${REGION_NAME:-us-1}"
ELB_TARGET_GROUP="${ELB_TARGET_GROUP:-}"        # optional: the target group ARN this node joins (IP targets)

id espra >/dev/null 2>&1 || useradd --system --home /var/lib/espra-node --shell /usr/sbin/nologin espra
npm install -g espra-node
install -d -m 0750 -o espra -g espra /etc/espra-node
aws ssm get-parameter --with-decryption --name "$SECRET_PARAM" --query Parameter.Value --output text > /etc/espra-node/secret
chown espra:espra /etc/espra-node/secret && chmod 0600 /etc/espra-node/secret

TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
PRIVATE_IP=$(curl -s -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/local-ipv4)
cat > /etc/espra-node/common.env <<ENV
ESPRA_SEED=$SEEDS
ESPRA_REGION=$REGION_NAME
ESPRA_ADVERTISE=$PRIVATE_IP
ENV
if [ -n "$ELB_TARGET_GROUP" ]; then
  echo "ESPRA_ELB_TARGET_GROUP=$ELB_TARGET_GROUP" >> /etc/espra-node/common.env
fi
# Let a closing SO_REUSEPORT listener hand queued connections to its siblings (Linux >= 5.14).
sysctl -w net.ipv4.tcp_migrate_req=1
install -m 0644 "$(npm root -g)/espra-node/infra/systemd/espra-node@.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now "espra-node@$ROLE"
