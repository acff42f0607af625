import ShootdownCore
print("hi")
