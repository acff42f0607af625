#!/bin/bash
# boot.sh ARCH KERNEL NCPU OUTLOG EXTRA_APPEND...   (env VS=0 disables the virtio-serial device)
a=$1; k=$2; n=$3; out=$4; shift 4
vs=()
if [ "${VS:-1}" = 1 ]; then
  vs=(-device virtio-serial-pci,id=vser0 -chardev file,id=res0,path=$out.vport -device virtserialport,bus=vser0.0,chardev=res0,name=org.shootdown.results)
fi
if [ $a = x86_64 ]; then
  timeout ${TMO:-120} qemu-system-x86_64 -accel tcg${TCGOPT} -machine q35 -cpu max -smp $n -m 512 -display none -monitor none -serial file:$out -no-reboot "${vs[@]}" \
    -kernel $k -initrd /tmp/fixtures/initrd-x86_64.gz -append "console=ttyS0 panic=-1 $*"
else
  timeout ${TMO:-120} qemu-system-aarch64 -accel tcg -machine virt -cpu max -smp $n -m 512 -display none -monitor none -serial file:$out -no-reboot "${vs[@]}" \
    -kernel $k -initrd /tmp/fixtures/initrd-aarch64.gz -append "console=ttyAMA0 panic=-1 $*"
fi
echo "rc=$?"
