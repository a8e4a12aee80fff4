# qianzhi .rpm %pre: the qianzhi system user and group, before the files that belong to the group
# (/etc/qianzhi) are laid down.
getent group qianzhi >/dev/null || groupadd -r qianzhi
getent passwd qianzhi >/dev/null || useradd -r -g qianzhi -d /var/lib/qianzhi -M \
    -s /sbin/nologin -c "qianzhi daemon" qianzhi
exit 0
