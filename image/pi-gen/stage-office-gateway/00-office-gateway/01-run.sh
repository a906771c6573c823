#!/bin/bash -e
# pi-gen, on the build host: the appliance's files and the wheel (build.sh put both in files/).
VERSION=$(cat files/VERSION)
bash files/repo/image/stage.sh "${ROOTFS_DIR}" "${VERSION}"
install -D -m 0644 files/*.whl -t "${ROOTFS_DIR}/var/cache/office-gateway/"
echo "${VERSION}" > "${ROOTFS_DIR}/var/cache/office-gateway/VERSION"
