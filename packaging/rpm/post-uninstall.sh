# qianzhi .rpm %postun: systemd forgets the unit on erase; an upgrade restarts a running service
# with the new binary. The qianzhi user and /var/lib/qianzhi are kept.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart qianzhi.service >/dev/null 2>&1 || :
    fi
fi
exit 0
