# qianzhi .rpm %post: on first install ($1 = 1) /etc/qianzhi becomes readable by the qianzhi group
# only (a later upgrade keeps what the administrator chose); systemd learns about the unit. The
# service is neither enabled nor started: /etc/qianzhi/config.toml must be edited first.
if [ "$1" -eq 1 ]; then
    chown root:qianzhi /etc/qianzhi && chmod 0750 /etc/qianzhi || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
