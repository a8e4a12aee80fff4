# qianzhi .rpm %preun: on erase (not on upgrade, $1 = 1) the service is stopped and disabled.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now qianzhi.service >/dev/null 2>&1 || :
fi
exit 0
