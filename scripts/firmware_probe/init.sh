#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox insmod /msr.ko
echo "=== /proc/mtrr"
/bin/busybox cat /proc/mtrr
echo "=== phys"
/bin/busybox grep -m1 "address sizes" /proc/cpuinfo
/bin/busybox grep -c ^processor /proc/cpuinfo
echo "=== msr"
/bin/rdmsr
echo "=== end"
/bin/busybox poweroff -f
