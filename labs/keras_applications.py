"""The no-top weights files Keras downloads for the keras.applications models the series
uses, by model: (the file's name with {size}, the input sizes that have a file of their
own). `grader new` fills a lab's [lab.base] from here."""

FILES = {
    "MobileNetV2": ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5", (96, 128, 160, 192, 224)),
    "MobileNet": ("mobilenet_1_0_{size}_tf_no_top.h5", (128, 160, 192, 224)),
    "ResNet50": ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", ()),
    "VGG16": ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", ()),
    "Xception": ("xception_weights_tf_dim_ordering_tf_kernels_notop.h5", ()),
}
