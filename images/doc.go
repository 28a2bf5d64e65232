// Package images is Cubo's image store: pulling from OCI/Docker v2 registries, a content
// store that is a valid OCI image layout, layers unpacked once per layer, and overlay
// mounts of those layers as a container or build rootfs.
//
// On-disk layout under the root dir (see [New]):
//
//	ROOT/images/                 OCI image layout: oci-layout, index.json, blobs/sha256/<hex>
//	ROOT/layers/<diffid-hex>/    one unpacked layer, keyed by its diff_id (uncompressed digest)
//	    diff/                    the layer as an overlayfs lower dir (whiteouts are 0/0 char
//	                             devices, opaque dirs carry trusted.overlay.opaque=y)
//	    size                     bytes of file data in diff/, for listings
//	ROOT/layers/empty/           an empty lower dir for images without layers
//	ROOT/tmp/                    ingest files, staging dirs and lock files; never trusted
//	ROOT/images.lock             shared by pulls, exclusive for removal and garbage collection
//	ROOT/index.lock              held while index.json is rewritten
//
// index.json names each image with org.opencontainers.image.ref.name set to the familiar
// name ("alpine:latest", "127.0.0.1:5000/alpine:3.20"), so `skopeo inspect
// oci:ROOT/images:alpine:latest` and umoci can read the store. The unpacked layers live
// outside the layout so those tools never see them.
//
// Nothing becomes visible before it is verified: blobs are written to ROOT/tmp, checked
// against their digest and size while they stream, and renamed into blobs/sha256 only then;
// layers are unpacked into a staging dir that is renamed into ROOT/layers only after the
// diff_id matches; index.json is replaced atomically once every layer is in place.
package images
